"""Fréchet distance between two feature distributions (FID when the features are Inception-v3 pool3).

Each set is summarised by its mean and covariance, as a Gaussian; the Fréchet (2-Wasserstein) distance
between N(mu1, C1) and N(mu2, C2) is ||mu1 − mu2||² + Tr(C1 + C2 − 2·(C1·C2)^½) (Heusel et al., 2017). The
square root is computed as the FID reference code does, so numbers are comparable with published ones:
`scipy.linalg.sqrtm`, retried with 1e-6·I added to both covariances when it is not finite, and a negligible
imaginary part dropped. Everything is float64. `FeatureStatistics` accumulates the moments batch by batch
(Chan et al.'s pairwise update, stable when the mean is large compared with the spread), so 50k features never
sit in memory at once.
"""

import json
import os
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import torch

ArrayLike = np.ndarray | torch.Tensor

# Largest imaginary part on the diagonal of (C1·C2)^½ that is still treated as round-off (as in the FID code).
MAX_IMAGINARY_COMPONENT = 1e-3


def _as_feature_matrix(features: ArrayLike) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"Features must be a (num_samples, feature_dim) array, got shape {features.shape}.")
    if not np.isfinite(features).all():
        raise ValueError("Features contain NaN or inf; check the images and the feature extractor.")
    return features


class FeatureStatistics:
    """Number of samples, mean and covariance of a feature set, updated batch by batch in float64.

    `save` writes an .npz with `mu` and `sigma` (the keys pytorch-fid uses, so either tool reads the other's
    files), `num_samples` and `metadata` (a JSON object, e.g. the feature space and the data set).
    """

    def __init__(self, feature_dim: int | None = None, metadata: dict[str, Any] | None = None):
        self.feature_dim = feature_dim
        self.metadata = dict(metadata or {})
        self.num_samples = 0
        self._mean = np.zeros(feature_dim or 0)
        self._scatter = np.zeros((feature_dim or 0,) * 2)  # Σ (x − mean)(x − mean)ᵀ

    @classmethod
    def from_features(
        cls, features: ArrayLike, metadata: dict[str, Any] | None = None
    ) -> "FeatureStatistics":
        return cls(metadata=metadata).update(features)

    def update(self, features: ArrayLike) -> "FeatureStatistics":
        """Add a (batch_size, feature_dim) batch of features; returns `self`."""
        batch = _as_feature_matrix(features)
        if self.feature_dim is None:
            self.feature_dim = batch.shape[1]
            self._mean, self._scatter = np.zeros(self.feature_dim), np.zeros((self.feature_dim,) * 2)
        elif batch.shape[1] != self.feature_dim:
            raise ValueError(
                f"Features of dimension {batch.shape[1]} cannot be added to statistics of dimension "
                f"{self.feature_dim}: were they computed with another feature extractor?"
            )
        if batch.shape[0] == 0:
            return self
        batch_size, total = batch.shape[0], self.num_samples + batch.shape[0]
        batch_mean = batch.mean(axis=0)
        centered = batch - batch_mean
        delta = batch_mean - self._mean
        # Chan et al.: merging two sets adds the between-means term n_a·n_b/n·δδᵀ to their scatters.
        between = (self.num_samples * batch_size / total) * np.outer(delta, delta)
        self._scatter += centered.T @ centered + between
        self._mean += delta * (batch_size / total)
        self.num_samples = total
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.num_samples == 0:
            raise ValueError("The statistics hold no samples yet; call `update` with features first.")
        return self._mean.copy()

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (divided by n − 1, like `np.cov`)."""
        if self.num_samples < 2:
            raise ValueError(f"A covariance needs at least 2 samples, got {self.num_samples}.")
        return self._scatter / (self.num_samples - 1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics to `path` (exactly: no ".npz" is appended)."""
        mean, covariance = self.mean, self.covariance
        with open(path, "wb") as file:
            np.savez(
                file,
                mu=mean,
                sigma=covariance,
                num_samples=self.num_samples,
                metadata=json.dumps(self.metadata),
            )

    @classmethod
    def load(cls, path: str | os.PathLike, num_samples: int | None = None) -> "FeatureStatistics":
        """Statistics written by `save`, or a pytorch-fid .npz (`mu`, `sigma`) with `num_samples` given."""
        with np.load(path) as data:
            missing = [key for key in ("mu", "sigma") if key not in data]
            if missing:
                raise ValueError(
                    f"{path} is not a statistics file: it has no {missing} (found {list(data)})."
                )
            if "num_samples" in data:
                num_samples = int(data["num_samples"])
            elif num_samples is None:
                raise ValueError(
                    f"{path} does not record its number of samples; pass `num_samples` (the number of images "
                    "its statistics were computed from)."
                )
            mean, covariance = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            metadata = json.loads(str(data["metadata"])) if "metadata" in data else {}
        if mean.ndim != 1 or covariance.shape != (mean.shape[0], mean.shape[0]) or num_samples < 2:
            raise ValueError(
                f"{path} holds a mean of shape {mean.shape}, a covariance of shape {covariance.shape} and "
                f"{num_samples} samples; expected (D,), (D, D) and at least 2 samples."
            )
        statistics = cls(mean.shape[0], metadata)
        statistics.num_samples = num_samples
        statistics._mean = mean
        statistics._scatter = covariance * (num_samples - 1)
        return statistics

    def __repr__(self) -> str:
        return f"FeatureStatistics(feature_dim={self.feature_dim}, num_samples={self.num_samples})"


def frechet_distance(stats_a: FeatureStatistics, stats_b: FeatureStatistics, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets.

    Warns when a set has no more samples than feature dimensions: its covariance is then singular and the
    distance is dominated by estimation error.
    """
    for stats in (stats_a, stats_b):
        if stats.num_samples < 2:
            raise ValueError(f"A Fréchet distance needs at least 2 samples per set, got {stats.num_samples}.")
    if stats_a.feature_dim != stats_b.feature_dim:
        raise ValueError(
            f"Cannot compare features of dimension {stats_a.feature_dim} and {stats_b.feature_dim}: they "
            "come from different feature extractors."
        )
    for stats in (stats_a, stats_b):
        if stats.num_samples <= stats.feature_dim:
            warnings.warn(
                f"{stats.num_samples} samples of {stats.feature_dim}-d features give a singular covariance "
                f"(rank at most {stats.num_samples - 1}); the Fréchet distance is unreliable. Use at least "
                f"{stats.feature_dim + 1} samples, and many more to compare models (>= 10,000 for FID).",
                stacklevel=2,
            )
    return frechet_distance_from_moments(
        stats_a.mean, stats_a.covariance, stats_b.mean, stats_b.covariance, eps
    )


def frechet_distance_from_moments(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 − mu2||² + Tr(sigma1 + sigma2 − 2·(sigma1·sigma2)^½), in float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"Means and covariances must have shapes (D,) and (D, D) with one D; got {mu1.shape}, "
            f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}."
        )
    if not all(np.isfinite(array).all() for array in (mu1, sigma1, mu2, sigma2)):
        raise ValueError("Means or covariances contain NaN or inf.")

    covariance_sqrt = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covariance_sqrt).all():
        warnings.warn(
            f"The square root of the covariance product is not finite; adding {eps}·I to both covariances.",
            stacklevel=2,
        )
        offset = eps * np.eye(dim)
        covariance_sqrt = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covariance_sqrt):
        imaginary = np.abs(np.diagonal(covariance_sqrt).imag).max()
        if imaginary > MAX_IMAGINARY_COMPONENT:
            raise ValueError(
                f"The square root of the covariance product has an imaginary component of {imaginary:.3g}: "
                "the covariances are too ill-conditioned. Use more samples than feature dimensions."
            )
        covariance_sqrt = covariance_sqrt.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covariance_sqrt))
