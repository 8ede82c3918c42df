"""Generators, discriminators and noise predictors, one self-contained file per family."""

from smart_hf.models.toy_mlp import MLPNoisePredictor, ToyDiscriminator, ToyGenerator

__all__ = ["MLPNoisePredictor", "ToyDiscriminator", "ToyGenerator"]
