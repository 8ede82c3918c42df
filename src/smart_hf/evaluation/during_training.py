"""FD, precision and recall of a generator during training, against real features computed once and cached.

`TrainingEvaluator` is what `train_smart_gan.py --eval_steps N` runs on the main process: it draws
`num_samples` training images (the reference), extracts their features once, and then scores a generator as
`smart-hf evaluate` scores its export (`generated_images` of the one-step pipeline, 8-bit rounded, the same
seed and batch size give the same images; `frechet_distance`; `precision_recall` with k = 3).

The reference features are cached in `<cache_dir>/eval_reference-<key>.npz`, where the key hashes the feature
space, the image size and the reference images' pixels: other data, another extractor or resolution get
another file (computed afresh), and a file whose recorded metadata differs from its key is refused
(`runner.reference_features`), never reused.
"""

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from smart_hf.data import ImageDataset
from smart_hf.evaluation.features import DigitsFeatureExtractor, FeatureExtractor
from smart_hf.evaluation.frechet import FeatureStatistics, frechet_distance
from smart_hf.evaluation.images import generated_images
from smart_hf.evaluation.options import DEFAULT_DINOV2_MODEL, DEFAULT_K, FRECHET_METRICS
from smart_hf.evaluation.precision_recall import precision_recall
from smart_hf.evaluation.runner import build_feature_extractor, reference_features
from smart_hf.pipelines import SmartOneStepPipeline

CACHE_PREFIX = "eval_reference-"
# The Fréchet metric of each feature space, e.g. "fd_digits" for "digits" (the names metrics.json uses).
FRECHET_METRIC_OF = {space: metric for metric, space in FRECHET_METRICS.items()}


def reference_indices(num_images: int, dataset_size: int, seed: int) -> torch.Tensor:
    """The training images of the reference: `num_images` drawn without replacement with `seed`."""
    return torch.randperm(dataset_size, generator=torch.Generator().manual_seed(seed))[:num_images]


def dataset_batches(dataset: ImageDataset, indices: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(indices), batch_size):
        yield torch.stack([dataset[int(index)]["images"] for index in indices[start : start + batch_size]])


def images_digest(batches: Iterator[torch.Tensor]) -> str:
    """SHA-256 of the images' float32 pixels and shapes."""
    digest = hashlib.sha256()
    for batch in batches:
        batch = batch.float().contiguous()
        digest.update(str(tuple(batch.shape)).encode())
        digest.update(batch.numpy().tobytes())
    return digest.hexdigest()


class TrainingEvaluator:
    """FD (in `space`'s features), precision and recall of generators against `num_samples` images of
    `dataset`, with as many generated images.

    Args:
        dataset: the training images (the reference).
        space: feature space, one of `smart_hf.evaluation.options.FEATURE_SPACES`.
        num_samples: reference and generated images (at most the data set's size).
        cache_dir: folder of the cached reference features (None: not cached).
        batch_size, seed: of the generated images (and of the reference's draw), as `smart-hf evaluate`'s.
        device: where the feature extractor runs.
        dinov2_model, inception_weights: as for `smart-hf evaluate`.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        space: str,
        num_samples: int,
        cache_dir: str | None,
        batch_size: int,
        seed: int,
        device: str | torch.device = "cpu",
        dinov2_model: str = DEFAULT_DINOV2_MODEL,
        inception_weights: str | None = None,
        k: int = DEFAULT_K,
    ):
        self.extractor = build_feature_extractor(space, dinov2_model, inception_weights).to(device)
        check_fits(self.extractor, dataset.sample_shape)
        self.metric = FRECHET_METRIC_OF[space]
        self.num_samples = min(num_samples, len(dataset))
        self.batch_size, self.seed, self.k = batch_size, seed, k
        indices = reference_indices(self.num_samples, len(dataset), seed)

        def images() -> Iterator[torch.Tensor]:
            return dataset_batches(dataset, indices, batch_size)

        self.cache, metadata = None, {}
        if cache_dir is not None:
            metadata = {
                "feature_space": self.extractor.name,
                "resolution": dataset.resolution,
                "channels": dataset.channels,
                "num_reference": self.num_samples,
                "images_sha256": images_digest(images()),
            }
            key = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()[:16]
            self.cache = os.path.join(cache_dir, f"{CACHE_PREFIX}{key}.npz")
        self.real_features = reference_features(self.extractor, images, self.cache, metadata)
        self.real_statistics = FeatureStatistics.from_features(self.real_features)

    @property
    def description(self) -> dict[str, Any]:
        """How the metrics are measured, as metrics.json and the model card record it."""
        return {
            "metric": self.metric,
            "feature_extractor": self.extractor.name,
            "feature_dim": self.extractor.feature_dim,
            "reference": "training images",
            "num_samples": self.num_samples,
            "num_reference": self.num_samples,
            "k": self.k,
            "seed": self.seed,  # of the generated images, with `batch_size` (as `smart-hf evaluate --seed`)
            "batch_size": self.batch_size,
        }

    @torch.no_grad()
    def evaluate(self, generator: ModelMixin) -> dict[str, float]:
        """`{<fd metric>: ..., "precision": ..., "recall": ...}` of `generator` (an eval-mode image
        generator); empty when its images are not finite, without the FD when the covariances are too
        ill-conditioned (a collapsed generator): warned about, never estimated."""
        pipeline = SmartOneStepPipeline(gan=generator)
        features = []
        for batch in generated_images(pipeline, self.num_samples, self.batch_size, self.seed):
            if not torch.isfinite(batch).all():
                warnings.warn("The generator's images are not finite: nothing is measured.", stacklevel=2)
                return {}
            features.append(self.extractor.extract(batch))
        fake_features = torch.cat(features)
        metrics = {}
        try:
            fake_statistics = FeatureStatistics.from_features(fake_features)
            metrics[self.metric] = frechet_distance(fake_statistics, self.real_statistics)
        except ValueError as error:
            warnings.warn(f"{self.metric} could not be computed: {error}", stacklevel=2)
        return metrics | precision_recall(self.real_features, fake_features, self.k)


def check_fits(extractor: FeatureExtractor, sample_shape: tuple[int, ...]) -> None:
    """Refuse the digits classifier's features for images other than 8×8 grayscale digits."""
    if isinstance(extractor, DigitsFeatureExtractor):
        expected = (extractor.channels, extractor.resolution, extractor.resolution)
        if tuple(sample_shape) != expected:
            raise ValueError(
                f"Digits features measure 8×8 grayscale digits; these images are {sample_shape[1]}×"
                f"{sample_shape[2]} with {sample_shape[0]} channel(s). Use --eval_features inception or "
                "dinov2."
            )
