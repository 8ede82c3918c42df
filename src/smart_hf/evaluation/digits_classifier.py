"""A small CNN classifier of scikit-learn's 8×8 digits: the feature space of the digits benchmark (FD_digits).

Inception-v3 features mean nothing on 8×8 grayscale digits, so the digits benchmark measures Fréchet distances
in the penultimate layer of a classifier trained on the digits themselves, and counts classes with its
predictions (mode coverage). The weights ship in `smart_hf/assets/digits_classifier`;
`train_digits_classifier` wrote them, deterministically, in about 20 seconds on one CPU thread.
"""

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from smart_hf.data import DIGITS_RESOLUTION

DIGITS_CLASSIFIER_PATH = Path(__file__).resolve().parents[1] / "assets" / "digits_classifier"


class DigitsClassifier(ModelMixin, ConfigMixin):
    """Three 3×3 convolutions (two 2× poolings), a `feature_dim` GELU layer (the features), a linear head.

    The feature layer's activation is smooth so that no unit is dead: with ReLU, 33 of 64 units never fired on
    the digits, which left the feature covariance singular.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = DIGITS_RESOLUTION,
        num_classes: int = 10,
        width: int = 32,
        feature_dim: int = 64,
    ):
        super().__init__()
        if resolution % 4:
            raise ValueError(f"`resolution` must be a multiple of 4 (two 2× poolings), got {resolution}.")
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (resolution // 4) ** 2, feature_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) penultimate-layer activations of (B, in_channels, resolution, resolution)."""
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) class logits."""
        return self.head(self.features(images))


def load_digits_classifier(path: str | Path = DIGITS_CLASSIFIER_PATH) -> DigitsClassifier:
    """The shipped classifier (or one saved by `save_pretrained` at `path`), in eval mode on the CPU."""
    return DigitsClassifier.from_pretrained(path, use_safetensors=True)
