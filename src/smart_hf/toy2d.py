"""The 2-D Gaussian-mixture data sets with a ground-truth score, and their sample-quality metrics."""

import math
from dataclasses import dataclass

import torch

from smart_hf.scores import GaussianMixtureScore


@dataclass(frozen=True)
class ToyDataset:
    """An isotropic Gaussian mixture with equal weights: `means` (K, 2) and a shared `std`."""

    name: str
    means: torch.Tensor
    std: float

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        components = torch.randint(0, self.means.shape[0], (num_samples,), generator=generator)
        noise = torch.randn(num_samples, self.means.shape[1], generator=generator)
        return self.means[components] + self.std * noise

    def analytic_score(self, alphas_cumprod: torch.Tensor | None = None) -> GaussianMixtureScore:
        return GaussianMixtureScore(self.means, self.std, alphas_cumprod=alphas_cumprod)


def _grid25() -> ToyDataset:
    coords = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    means = torch.cartesian_prod(coords, coords)
    return ToyDataset("grid25", means, 0.05)


def _ring8() -> ToyDataset:
    angles = torch.arange(8) * (2 * math.pi / 8)
    return ToyDataset("ring8", 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1), 0.02)


TOY_DATASETS = {"grid25": _grid25, "ring8": _ring8}


def load_toy_dataset(name: str) -> ToyDataset:
    if name not in TOY_DATASETS:
        raise ValueError(f"Unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}.")
    return TOY_DATASETS[name]()


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two equally sized point sets (fixed random directions)."""
    if x.shape != y.shape:
        raise ValueError(f"Point sets must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    directions = torch.randn(x.shape[1], num_projections, generator=torch.Generator().manual_seed(seed))
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected_x = (x.double() @ directions.double()).sort(dim=0).values
    projected_y = (y.double() @ directions.double()).sort(dim=0).values
    return (projected_x - projected_y).abs().mean().item()


def toy_metrics(samples: torch.Tensor, dataset: ToyDataset, seed: int = 0) -> dict[str, float]:
    """Modes covered, % high-quality samples and sliced Wasserstein distance to fresh true samples.

    A sample is high quality when it lies within 3 std of its nearest mode; a mode is covered when it is the
    nearest mode of at least one high-quality sample.
    """
    samples = samples.detach().float().cpu()
    if not torch.isfinite(samples).all():
        raise ValueError("Samples contain NaN or inf; the generator has diverged.")
    distances = torch.cdist(samples, dataset.means)
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance <= 3 * dataset.std
    reference = dataset.sample(samples.shape[0], generator=torch.Generator().manual_seed(10_000 + seed))
    return {
        "modes_covered": int(nearest_mode[high_quality].unique().numel()),
        "num_modes": int(dataset.means.shape[0]),
        "high_quality_percent": 100.0 * high_quality.float().mean().item(),
        "sliced_wasserstein": sliced_wasserstein(samples, reference, seed=seed),
    }
