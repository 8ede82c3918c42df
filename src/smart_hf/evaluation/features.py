"""Feature extractors for image metrics, behind one interface: `extract(images) -> (B, feature_dim) features`.

Images are float tensors (B, C, H, W) in [−1, 1] (the range of smart_hf's data sets and generators) with 1
or 3 channels; each extractor converts channels (grayscale is repeated, RGB turned to ITU-R 601-2 luma like
PIL's "L") and resizes as its network requires. Three feature spaces, not comparable with one another, so
results carry the extractor's `name`:

- `DigitsFeatureExtractor`: the penultimate layer (64-d) of the shipped 8×8 digits classifier, for FD_digits.
- `Dinov2FeatureExtractor`: DINOv2 through `transformers`, the FD_DINOv2 convention of Stein et al. (2023):
  bicubic resize to 224×224, ImageNet normalisation, the CLS token of ViT-L/14 (`facebook/dinov2-large`).
- `InceptionFeatureExtractor`: Inception-v3 pool3 (2048-d) from pytorch-fid, i.e. FID proper, on images
  rounded to 8 bits as the FID tools read them from files.
"""

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from smart_hf.evaluation.digits_classifier import DigitsClassifier, load_digits_classifier
from smart_hf.evaluation.frechet import FeatureStatistics
from smart_hf.evaluation.options import DEFAULT_DINOV2_MODEL

# PIL's "L" conversion (ITU-R 601-2 luma), the one smart_hf.data applies to image files.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_MODEL_TYPES = ("dinov2", "dinov2_with_registers")
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
RANGE_TOLERANCE = 1e-3


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Images with `channels` (1 or 3) channels: grayscale repeated to RGB, RGB reduced to luma."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return torch.einsum("bchw,c->bhw", images, weights).unsqueeze(1)


class FeatureExtractor(nn.Module):
    """Base class: subclasses set `name`, `feature_dim` and `channels` and implement `_features`."""

    name: str
    feature_dim: int
    channels: int

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) float32 CPU features of (B, C, H, W) images in [−1, 1], C = 1 or 3."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"{type(self).__name__} takes (batch, channels, height, width) images with 1 or 3 channels, "
                f"got shape {tuple(images.shape)}."
            )
        if not torch.isfinite(images).all():
            raise ValueError("Images contain NaN or inf.")
        low, high = images.min().item(), images.max().item()
        if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            raise ValueError(
                f"Images must be in [−1, 1], got values in [{low:.3g}, {high:.3g}]; convert 8-bit pixels "
                "with x / 127.5 − 1."
            )
        parameter = next(self.parameters())
        images = convert_channels(images.to(parameter.device, parameter.dtype), self.channels)
        return self._features(images).float().cpu()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DigitsFeatureExtractor(FeatureExtractor):
    """Penultimate-layer features and class predictions of the digits classifier (8×8 grayscale images)."""

    name = "digits_classifier"

    def __init__(self, classifier: DigitsClassifier | None = None):
        super().__init__()
        self.classifier = (classifier or load_digits_classifier()).eval()
        self.feature_dim = self.classifier.config.feature_dim
        self.channels = self.classifier.config.in_channels
        self.resolution = self.classifier.config.resolution

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                f"The digits classifier takes {self.resolution}×{self.resolution} images (the digits "
                f"resolution of smart_hf.data), got {images.shape[-2]}×{images.shape[-1]}."
            )
        return self.classifier.features(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) predicted classes (argmax of the logits), e.g. for class histograms and mode coverage."""
        features = self.extract(images).to(next(self.parameters()).device)
        return self.classifier.head(features).argmax(dim=1).cpu()


class Dinov2FeatureExtractor(FeatureExtractor):
    """DINOv2 features: the CLS token (`pooling="cls"`, the FD_DINOv2 convention) or the mean patch token.

    `model_name_or_path` is a Hub id or a local folder loaded with `transformers.AutoModel`; offline, save the
    model to a folder once (`AutoModel.from_pretrained(id).save_pretrained(folder)`) and pass the folder.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_DINOV2_MODEL,
        pooling: str = "cls",
        resolution: int = 224,
    ):
        super().__init__()
        from transformers import AutoModel

        if pooling not in ("cls", "mean"):
            raise ValueError(f"`pooling` must be 'cls' or 'mean', got {pooling!r}.")
        try:
            self.model = AutoModel.from_pretrained(model_name_or_path).eval()
        except OSError as error:
            raise OSError(
                f"Cannot load the DINOv2 model {model_name_or_path!r} ({error}). Without network access, "
                "save it to a folder on a connected machine with "
                "AutoModel.from_pretrained(...).save_pretrained(folder) and pass the folder."
            ) from error
        config = self.model.config
        if config.model_type not in DINOV2_MODEL_TYPES:
            raise ValueError(f"{model_name_or_path!r} is a {config.model_type!r} model, not DINOv2.")
        self.pooling = pooling
        self.resolution = resolution
        self.feature_dim = config.hidden_size
        self.channels = 3
        self.num_prefix_tokens = 1 + getattr(config, "num_register_tokens", 0)
        self.name = f"dinov2_{pooling}({model_name_or_path})"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.resolution, self.resolution)
        pixels = nn.functional.interpolate((images + 1) / 2, size=size, mode="bicubic", antialias=True)
        pixels = (pixels.clamp(0, 1) - self.mean) / self.std
        output = self.model(pixel_values=pixels)
        if self.pooling == "cls":
            return output.pooler_output
        return output.last_hidden_state[:, self.num_prefix_tokens :].mean(dim=1)


class InceptionFeatureExtractor(FeatureExtractor):
    """Inception-v3 pool3 features (2048-d) of pytorch-fid's FID network, the feature space of published FIDs.

    pytorch-fid (and torchvision, which it imports) is imported only here. Its weights are downloaded on first
    use; offline, download `FID_WEIGHTS_URL` elsewhere and pass the file as `weights_path`.
    """

    name = "inception_v3_pool3"
    feature_dim = 2048
    channels = 3

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        try:
            from pytorch_fid import inception
        except ImportError as error:
            raise ImportError(
                "FID needs the Inception-v3 network of pytorch-fid: pip install pytorch-fid (needs "
                "torchvision). FD_digits and FD_DINOv2 work without it."
            ) from error
        with ExitStack() as stack:
            if weights_path is not None:
                if not Path(weights_path).is_file():
                    raise FileNotFoundError(
                        f"No Inception weights at {weights_path}. Download {FID_WEIGHTS_URL} (pytorch-fid's "
                        "FID Inception weights) and pass the file's path."
                    )
                # pytorch-fid fetches its weights with `load_state_dict_from_url`; hand it the local file.
                state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
                stack.enter_context(
                    mock.patch.object(inception, "load_state_dict_from_url", return_value=state_dict)
                )
            try:
                network = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
            except OSError as error:
                raise OSError(
                    f"Cannot download the Inception weights ({error}). Download {FID_WEIGHTS_URL} on a "
                    "connected machine and pass the file with --inception-weights PATH (smart-hf evaluate), "
                    "--eval_inception_weights PATH (training) or weights_path=...."
                ) from error
        self.network = network.eval()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        # As pytorch-fid reads image files: 8-bit pixels / 255; its network resizes them to 299×299 itself
        # (bilinear, no antialiasing) and scales them to [−1, 1].
        pixels = ((images + 1) * 127.5).round().clamp(0, 255) / 255
        return self.network(pixels)[0].flatten(start_dim=1)


def compute_features(extractor: FeatureExtractor, images: Iterable[torch.Tensor]) -> torch.Tensor:
    """(N, feature_dim) features of batches of images (all held in memory: use for P&R and small sets)."""
    features = [extractor.extract(batch) for batch in images]
    if not features:
        raise ValueError("No images to extract features from.")
    return torch.cat(features)


def compute_statistics(
    extractor: FeatureExtractor, images: Iterable[torch.Tensor], metadata: dict | None = None
) -> FeatureStatistics:
    """Streaming mean and covariance of the features of batches of images (one batch in memory at a time)."""
    statistics = FeatureStatistics(extractor.feature_dim, metadata)
    for batch in images:
        statistics.update(extractor.extract(batch))
    if statistics.num_samples == 0:
        raise ValueError("No images to extract features from.")
    return statistics
