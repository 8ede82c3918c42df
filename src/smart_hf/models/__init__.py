"""Generators, discriminators and noise predictors, one self-contained file per family."""

from smart_hf.models.dcgan import DCGANDiscriminator, DCGANGenerator
from smart_hf.models.resnet_gan import ResNetDiscriminator, ResNetGenerator
from smart_hf.models.toy_mlp import MLPNoisePredictor, ToyDiscriminator, ToyGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPNoisePredictor",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ToyDiscriminator",
    "ToyGenerator",
]
