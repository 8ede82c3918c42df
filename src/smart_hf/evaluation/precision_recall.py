"""Precision and recall of a generative model from k-nearest-neighbour manifolds (Kynkäänniemi et al., 2019).

Each feature set stands for its manifold by the union of balls around its points, a ball's radius being
the distance from its point to the point's k-th nearest neighbour in the same set. Precision is the fraction
of generated samples inside the real manifold (fidelity), recall the fraction of real samples inside the
generated manifold (coverage). The paper uses k = 3 and equally many (50k) samples per set in VGG-16
features; any feature space works, as long as results are labelled with it. Distances are computed in blocks
of rows, so memory grows with `batch_size × num_samples`, not `num_samples²`.

Density and coverage (Naeem et al., 2020) use the real balls only, so generated outliers cannot inflate
them: density is the mean number of real balls a generated sample lies in, divided by k (about 1 for samples
on the data manifold, wherever on it they fall; 0 off it; less swayed than precision by the large balls of
real outliers), and coverage the fraction of real balls holding at least one generated sample (recall that
a generated outlier's large ball cannot raise).
"""

import numpy as np
import torch

from smart_hf.evaluation.options import DEFAULT_K


def _as_points(features: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    points = torch.as_tensor(features)
    if points.ndim != 2:
        raise ValueError(
            f"{name} must be a (num_samples, feature_dim) array, got shape {tuple(points.shape)}."
        )
    if not torch.isfinite(points).all():
        raise ValueError(f"{name} contain NaN or inf.")
    return points.to(torch.promote_types(points.dtype, torch.float32))


def knn_radii(features: torch.Tensor, k: int = DEFAULT_K, batch_size: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour among the other points of the set."""
    if not 1 <= k < features.shape[0]:
        raise ValueError(
            f"k must be in [1, {features.shape[0] - 1}] for {features.shape[0]} points, got {k}."
        )
    radii = []
    for start in range(0, features.shape[0], batch_size):
        distances = torch.cdist(features[start : start + batch_size], features)
        rows = torch.arange(distances.shape[0])
        distances[rows, start + rows] = torch.inf  # a point is not its own neighbour
        radii.append(distances.kthvalue(k, dim=1).values)
    return torch.cat(radii)


def _checked_pair(
    real_features: np.ndarray | torch.Tensor, fake_features: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = _as_points(real_features, "Real features"), _as_points(fake_features, "Generated features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"Real and generated features have dimensions {real.shape[1]} and {fake.shape[1]}: they come "
            "from different feature extractors."
        )
    dtype = torch.promote_types(real.dtype, fake.dtype)
    return real.to(dtype), fake.to(device=real.device, dtype=dtype)


def inside_manifold(
    queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Whether each query lies in at least one ball of radius `radii[j]` around `points[j]`."""
    inside = [
        (torch.cdist(queries[start : start + batch_size], points) <= radii).any(dim=1)
        for start in range(0, queries.shape[0], batch_size)
    ]
    return torch.cat(inside)


def precision_recall(
    real_features: np.ndarray | torch.Tensor,
    fake_features: np.ndarray | torch.Tensor,
    k: int = DEFAULT_K,
    batch_size: int = 1024,
) -> dict[str, float]:
    """`{"precision": ..., "recall": ...}` of generated (`fake_features`) against real features, in [0, 1]."""
    real, fake = _checked_pair(real_features, fake_features)
    real_radii, fake_radii = knn_radii(real, k, batch_size), knn_radii(fake, k, batch_size)
    return {
        "precision": inside_manifold(fake, real, real_radii, batch_size).double().mean().item(),
        "recall": inside_manifold(real, fake, fake_radii, batch_size).double().mean().item(),
    }


def density_coverage(
    real_features: np.ndarray | torch.Tensor,
    fake_features: np.ndarray | torch.Tensor,
    k: int = DEFAULT_K,
    batch_size: int = 1024,
) -> dict[str, float]:
    """`{"density": ..., "coverage": ...}` of generated (`fake_features`) against real features: density >= 0,
    coverage in [0, 1]."""
    real, fake = _checked_pair(real_features, fake_features)
    radii = knn_radii(real, k, batch_size)
    balls_per_sample, covered = [], torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for start in range(0, fake.shape[0], batch_size):
        inside = torch.cdist(fake[start : start + batch_size], real) <= radii  # (fakes, reals)
        balls_per_sample.append(inside.sum(dim=1))
        covered |= inside.any(dim=0)
    return {
        "density": torch.cat(balls_per_sample).double().mean().item() / k,
        "coverage": covered.double().mean().item(),
    }
