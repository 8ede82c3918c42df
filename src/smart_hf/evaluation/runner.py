"""One metric between generated images (a pipeline or an image folder) and a reference data set or folder.

This is what `smart-hf evaluate` runs. The reference side is computed once and cached in an .npz: its feature
statistics for the Fréchet distances, its features for precision/recall. A cache records the feature space,
the reference and the image size it was computed with, and is refused when any of them differs.
"""

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smart_hf.data import DIGITS, DIGITS_RESOLUTION, load_image_dataset
from smart_hf.evaluation.features import (
    DigitsFeatureExtractor,
    Dinov2FeatureExtractor,
    FeatureExtractor,
    InceptionFeatureExtractor,
    compute_features,
    compute_statistics,
)
from smart_hf.evaluation.frechet import FeatureStatistics, frechet_distance
from smart_hf.evaluation.images import dataset_images, folder_images, generated_images
from smart_hf.evaluation.options import (
    DEFAULT_DINOV2_MODEL,
    DEFAULT_K,
    DEFAULT_NUM_SAMPLES,
    FEATURE_SPACES,
    FRECHET_METRICS,
    METRICS,
)
from smart_hf.evaluation.precision_recall import precision_recall
from smart_hf.pipelines import SmartOneStepPipeline


def build_feature_extractor(
    space: str, dinov2_model: str = DEFAULT_DINOV2_MODEL, inception_weights: str | None = None
) -> FeatureExtractor:
    if space == "digits":
        return DigitsFeatureExtractor()
    if space == "dinov2":
        return Dinov2FeatureExtractor(dinov2_model)
    if space == "inception":
        return InceptionFeatureExtractor(inception_weights)
    raise ValueError(f"Unknown feature space {space!r}; choose one of {list(FEATURE_SPACES)}.")


def reference_images(
    reference: str, resolution: int, channels: int, batch_size: int
) -> Iterator[torch.Tensor]:
    """Batches of a reference: an image folder, or a `smart_hf.data` data set (name, Hub id, saved folder)."""
    is_saved_dataset = any(
        os.path.isfile(os.path.join(reference, name)) for name in ("state.json", "dataset_dict.json")
    )
    if os.path.isdir(reference) and not is_saved_dataset:
        return folder_images(reference, resolution, channels, batch_size)
    dataset = load_image_dataset(dataset_name=reference, resolution=resolution, channels=channels)
    return dataset_images(dataset, batch_size)


def evaluate_images(
    samples: SmartOneStepPipeline | str,
    reference: str,
    metric: str,
    *,
    features: str | None = None,
    num_samples: int | None = None,
    reference_cache: str | None = None,
    resolution: int | None = None,
    k: int = DEFAULT_K,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dinov2_model: str = DEFAULT_DINOV2_MODEL,
    inception_weights: str | None = None,
) -> dict[str, Any]:
    """`metric` of `samples` (a pipeline, or an image folder) against `reference`.

    `features` picks the feature space of "pr" (default: digits for the digits reference). `num_samples`
    defaults to 10,000 generated images for a Fréchet distance and to the reference's size for "pr" (the
    paper's equal sizes); for a folder, to all its images. `resolution` is the size images are loaded at: the
    classifier's 8 for digits features, else the generator's resolution, or required for two folders.
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {list(METRICS)}.")
    space = _feature_space(metric, features, reference)
    extractor = build_feature_extractor(space, dinov2_model, inception_weights).to(device)
    resolution = _resolution(extractor, resolution, samples, reference)
    metadata = {
        "feature_space": extractor.name,
        "reference": os.path.abspath(reference) if os.path.exists(reference) else reference,
        "resolution": resolution,
        "channels": extractor.channels,
    }

    def load_reference() -> Iterator[torch.Tensor]:
        return reference_images(reference, resolution, extractor.channels, batch_size)

    # A folder is checked before the reference's (longer) work; a pipeline's count may depend on it.
    folder = None
    if isinstance(samples, str):
        folder = folder_images(samples, resolution, extractor.channels, batch_size, num_samples)

    def sample_images(count: int) -> Iterator[torch.Tensor]:
        return folder if folder is not None else generated_images(samples, count, batch_size, seed)

    result: dict[str, Any] = {"metric": metric, "feature_space": extractor.name}
    if metric in FRECHET_METRICS:
        reference_stats = reference_statistics(extractor, load_reference, reference_cache, metadata)
        sample_stats = compute_statistics(extractor, sample_images(num_samples or DEFAULT_NUM_SAMPLES))
        result[metric] = frechet_distance(sample_stats, reference_stats)
        result |= {"num_samples": sample_stats.num_samples, "num_reference": reference_stats.num_samples}
    else:
        real = reference_features(extractor, load_reference, reference_cache, metadata)
        fake = compute_features(extractor, sample_images(num_samples or real.shape[0]))
        result |= precision_recall(real, fake, k)
        result |= {"k": k, "num_samples": fake.shape[0], "num_reference": real.shape[0]}
    return result


def reference_statistics(
    extractor: FeatureExtractor,
    images: Callable[[], Iterable[torch.Tensor]],
    cache: str | None,
    metadata: dict[str, Any],
) -> FeatureStatistics:
    """Feature statistics of the reference `images()`, read from the .npz `cache` when it exists, else
    computed and written there."""
    if cache is not None and Path(cache).is_file():
        statistics = FeatureStatistics.load(cache)
        _check_cache(cache, statistics.metadata, metadata)
        return statistics
    statistics = compute_statistics(extractor, images(), metadata)
    if cache is not None:
        _write_atomically(cache, statistics.save)
    return statistics


def reference_features(
    extractor: FeatureExtractor,
    images: Callable[[], Iterable[torch.Tensor]],
    cache: str | None,
    metadata: dict[str, Any],
) -> torch.Tensor:
    """Features of the reference `images()`, read from the .npz `cache` when it exists, else computed and
    written there (with `metadata`)."""
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as data:
            if "features" not in data:
                raise ValueError(f"{cache} holds no features (keys {list(data)}); is it a statistics file?")
            _check_cache(cache, json.loads(str(data["metadata"])), metadata)
            return torch.from_numpy(data["features"])
    features = compute_features(extractor, images())
    if cache is not None:

        def save(path: str) -> None:
            with open(path, "wb") as file:
                np.savez(file, features=features.numpy(), metadata=json.dumps(metadata))

        _write_atomically(cache, save)
    return features


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """`write(temporary path)`, then rename it to `path`: a run killed meanwhile leaves no truncated cache."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{path}.partial"
    write(partial)
    os.replace(partial, path)


def _check_cache(path: str, cached: dict[str, Any], expected: dict[str, Any]) -> None:
    if cached != expected:
        raise ValueError(
            f"The reference cache {path} was computed with {cached}, not {expected}; delete it or pass "
            "another path."
        )


def _feature_space(metric: str, features: str | None, reference: str) -> str:
    if metric in FRECHET_METRICS:
        if features not in (None, FRECHET_METRICS[metric]):
            raise ValueError(
                f"{metric} uses {FRECHET_METRICS[metric]} features; --features applies to 'pr' only."
            )
        return FRECHET_METRICS[metric]
    if features is None:
        if reference != DIGITS:
            raise ValueError(
                f"Pass the feature space of precision/recall (--features {'|'.join(FEATURE_SPACES)})."
            )
        return "digits"
    return features


def _resolution(
    extractor: FeatureExtractor, resolution: int | None, samples: SmartOneStepPipeline | str, reference: str
) -> int:
    if isinstance(extractor, DigitsFeatureExtractor):
        if resolution not in (None, extractor.resolution):
            raise ValueError(f"Digits features need {extractor.resolution}×{extractor.resolution} images.")
        return extractor.resolution
    if resolution is not None:
        return resolution
    if not isinstance(samples, str):
        return samples.gan.config.resolution
    if reference == DIGITS:
        return DIGITS_RESOLUTION
    raise ValueError("Pass the resolution to load both image folders at (--resolution).")
