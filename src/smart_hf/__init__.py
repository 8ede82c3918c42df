"""smart_hf: SMaRt (score matching regularity) for GANs, with one-step diffusers pipelines."""

from smart_hf.losses import GANLoss
from smart_hf.scores import GaussianMixtureScore, ModelScore, ScoreFunction, load_score_model
from smart_hf.smart import SmartRegularizer

__version__ = "0.1.0"

__all__ = [
    "GANLoss",
    "GaussianMixtureScore",
    "ModelScore",
    "ScoreFunction",
    "SmartRegularizer",
    "load_score_model",
]
