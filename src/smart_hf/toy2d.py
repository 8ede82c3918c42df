"""The 2-D Gaussian-mixture data sets with a ground-truth score, and their sample-quality metrics."""

import math
from dataclasses import dataclass

import torch

from smart_hf.scores import GaussianMixtureScore


@dataclass(frozen=True)
class ToyDataset:
    """An isotropic Gaussian mixture: `means` (K, 2), a shared `std` and component `weights` (K,).

    The weights are equal unless given, and are stored normalised to sum to one.
    """

    name: str
    means: torch.Tensor
    std: float
    weights: torch.Tensor | None = None

    def __post_init__(self):
        num_modes = self.means.shape[0]
        if self.weights is None:
            weights = torch.full((num_modes,), 1.0 / num_modes)
        else:
            weights = torch.as_tensor(self.weights, dtype=torch.float32)
            if weights.shape != (num_modes,) or not (weights > 0).all():
                raise ValueError(f"`weights` must be {num_modes} positive numbers, got {self.weights}.")
        object.__setattr__(self, "weights", weights / weights.sum())

    @property
    def equal_weights(self) -> bool:
        return bool((self.weights == self.weights[0]).all())

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.equal_weights:  # the draws of the equal-weight sets before they had weights
            components = torch.randint(0, self.means.shape[0], (num_samples,), generator=generator)
        else:
            components = torch.multinomial(self.weights, num_samples, replacement=True, generator=generator)
        noise = torch.randn(num_samples, self.means.shape[1], generator=generator)
        return self.means[components] + self.std * noise

    def analytic_score(self, alphas_cumprod: torch.Tensor | None = None) -> GaussianMixtureScore:
        return GaussianMixtureScore(self.means, self.std, self.weights, alphas_cumprod=alphas_cumprod)


def _grid(
    name: str, side: int, spacing: float, std: float, weights: torch.Tensor | None = None
) -> ToyDataset:
    """`side` × `side` modes `spacing` apart, centred on the origin, in row-major order."""
    coords = (torch.arange(side) - (side - 1) / 2) * spacing
    return ToyDataset(name, torch.cartesian_prod(coords, coords), std, weights)


def _ring(num_modes: int, radius: float) -> torch.Tensor:
    angles = torch.arange(num_modes) * (2 * math.pi / num_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def _grid25() -> ToyDataset:
    return _grid("grid25", 5, 2.0, 0.05)


def _ring8() -> ToyDataset:
    return ToyDataset("ring8", _ring(8, 2.0), 0.02)


def _grid9_weighted() -> ToyDataset:
    """A 3×3 grid whose weights grow 10× in row-major order: the (−2, −2) mode is the light one."""
    return _grid("grid9_weighted", 3, 2.0, 0.05, 10 ** (torch.arange(9) / 8))


def _two_rings() -> ToyDataset:
    """8 modes on a ring of radius 2 inside 16 on a ring of radius 4 (neighbours about 1.5 apart on each)."""
    return ToyDataset("two_rings", torch.cat([_ring(8, 2.0), _ring(16, 4.0)]), 0.05)


def _grid25_wide() -> ToyDataset:
    """grid25 with 1.5× the spacing and 3× the std: wider, blurrier modes."""
    return _grid("grid25_wide", 5, 3.0, 0.15)


def _grid49() -> ToyDataset:
    """A 7×7 grid 1.5 apart over grid25's square, std 0.05: more, closer modes."""
    return _grid("grid49", 7, 1.5, 0.05)


TOY_DATASETS = {
    "grid25": _grid25,
    "ring8": _ring8,
    "grid9_weighted": _grid9_weighted,
    "two_rings": _two_rings,
    "grid25_wide": _grid25_wide,
    "grid49": _grid49,
}


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


COVERED_SHARE = 0.25  # a mode is covered at a quarter of the high-quality samples its weight asks for


def toy_metrics(samples: torch.Tensor, dataset: ToyDataset, seed: int = 0) -> dict[str, float | list[int]]:
    """Sample quality, mode coverage and per-mode mass of generated samples, and their distance to the data.

    A sample is high quality (HQ) when it lies within 3 std of its nearest mode; it then counts for that
    mode. With N samples and mode weights w_k:

    - `modes_covered`: modes with at least one HQ sample;
    - `modes_covered_quarter`: modes with at least `COVERED_SHARE`·w_k·N HQ samples (a quarter of their
      expected count; true data has 98.9% HQ samples, 1 − exp(−4.5) in 2-D);
    - `high_quality_percent`: the HQ share of all samples;
    - `mass_tv_percent`: the total variation ½·Σ_k |s_k − w_k| between the modes' shares s_k of the HQ samples
      and the weights, in percent (100 when there is no HQ sample), so mass error is apart from quality;
    - `lightest_mode_ratio`: s_k / w_k of the lightest mode (of the worst-served one where several are
      lightest: every mode when the weights are equal); 1 is its exact share, 0 none;
    - `sliced_wasserstein`: sliced W1 to as many fresh true samples (seed 10,000 + `seed`);
    - `mode_counts`: the HQ samples per mode, in the order of `dataset.means`.
    """
    samples = samples.detach().float().cpu()
    if not torch.isfinite(samples).all():
        raise ValueError("Samples contain NaN or inf; the generator has diverged.")
    distances = torch.cdist(samples, dataset.means)
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance <= 3 * dataset.std
    counts = torch.bincount(nearest_mode[high_quality], minlength=dataset.means.shape[0])
    weights = dataset.weights.double()
    if high_quality.any():
        shares = counts.double() / counts.sum()
        mass_tv = 0.5 * (shares - weights).abs().sum().item()
    else:
        shares, mass_tv = torch.zeros_like(weights), 1.0
    lightest = weights <= weights.min() * (1 + 1e-6)
    reference = dataset.sample(samples.shape[0], generator=torch.Generator().manual_seed(10_000 + seed))
    return {
        "modes_covered": int((counts > 0).sum()),
        "modes_covered_quarter": int((counts >= COVERED_SHARE * weights * samples.shape[0]).sum()),
        "num_modes": int(dataset.means.shape[0]),
        "high_quality_percent": 100.0 * high_quality.float().mean().item(),
        "mass_tv_percent": 100.0 * mass_tv,
        "lightest_mode_ratio": (shares[lightest] / weights[lightest]).min().item(),
        "sliced_wasserstein": sliced_wasserstein(samples, reference, seed=seed),
        "mode_counts": counts.tolist(),
    }
