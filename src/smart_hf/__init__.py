"""smart_hf: SMaRt (score matching regularity) for GANs, with one-step diffusers pipelines."""

from smart_hf._lazy import export_lazily

__version__ = "0.1.0"
# The license of exported weights unless told otherwise (`--hub_license`, `smart-hf export --license`):
# smart_hf's own.
DEFAULT_LICENSE = "apache-2.0"

# Imported on first use, so that `import smart_hf.cli` (the `smart-hf` command) does not import torch.
_EXPORTS = {
    "GANLoss": "smart_hf.losses",
    "GaussianMixtureScore": "smart_hf.scores",
    "ModelScore": "smart_hf.scores",
    "ScoreFunction": "smart_hf.scores",
    "SmartRegularizer": "smart_hf.smart",
    "load_score_model": "smart_hf.scores",
}

__all__ = list(_EXPORTS)

export_lazily(__name__, _EXPORTS)
