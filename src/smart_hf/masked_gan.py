"""MaskedGAN's masking of the discriminator's inputs (Huang et al., NeurIPS 2022).

D sees real and fake images masked alike, so it cannot rely on any one region or frequency band; the masks
are multiplications, so the generator trains through them. Two independent transforms, each
`(images) -> (masked images, {})`, that compose (spatial first, then spectral):

- `ShiftedSpatialMask`: the image is cut into `patch_size` × `patch_size` patches on a grid shifted by a
  random offset in [0, patch_size)² per image (patches at the borders are cut short), and each patch is
  zeroed with probability `ratio`, so on average a fraction `ratio` of the pixels is masked.
- `BalancedSpectralMask`: the centred 2-D FFT plane is split into `num_bands` rings of equal width in radial
  frequency |f| / max|f| (band 0 holds the lowest frequencies, the mean included), and `bands_per_image`
  distinct bands are removed from each image (their FFT coefficients set to zero), chosen by the adaptive
  probabilities below.

Choices the paper left open, made here (defaults: ratio 0.3, patch 4, 4 bands, 1 removed per image): masked
pixels are set to 0 (mid-grey for images in [−1, 1]); and the spectral probabilities adapt as follows. After
each discriminator step, band k's margin is mean D(real) − mean D(fake) over the images that had band k
removed; m_k is its exponential moving average (rate `adapt_rate`, m_k = 0 at the start). Then

    p_k = min_share / K + (1 − min_share) · softmax(−m / temperature)_k,

so a band whose removal leaves D a smaller margin — the band D relies on most — is removed more often, which
keeps D from leaning on a few frequencies ("balanced"), and every band keeps at least `min_share / K`.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

MASK_MODES = ("none", "spatial", "spectral", "both")


@dataclass
class MaskedGANConfig:
    """MaskedGAN's options (flags `--masked_gan` and `--mask_<field>`)."""

    mode: str = field(
        default="none",
        metadata={
            "flag": "masked_gan",
            "choices": MASK_MODES,
            "help": "MaskedGAN (images): mask D's real and fake inputs by shifted patches and/or frequency "
            "bands.",
        },
    )
    ratio: float = field(default=0.3, metadata={"help": "Fraction of pixels masked (spatial)."})
    patch_size: int = field(default=4, metadata={"help": "Patch size in pixels (spatial)."})
    num_bands: int = field(default=4, metadata={"help": "Radial frequency bands (spectral)."})
    bands_per_image: int = field(default=1, metadata={"help": "Bands removed from each image (spectral)."})

    def build(
        self, resolution: int, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> list["ShiftedSpatialMask | BalancedSpectralMask"]:
        """The masks of `mode`, spatial before spectral."""
        masks: list[ShiftedSpatialMask | BalancedSpectralMask] = []
        if self.mode in ("spatial", "both"):
            masks.append(ShiftedSpatialMask(self.ratio, self.patch_size))
        if self.mode in ("spectral", "both"):
            masks.append(
                BalancedSpectralMask(resolution, self.num_bands, self.bands_per_image, all_reduce=all_reduce)
            )
        return masks


class ShiftedSpatialMask:
    """Zeroes random patches of a randomly shifted patch grid; a fraction `ratio` of pixels on average."""

    def __init__(self, ratio: float = 0.3, patch_size: int = 4):
        if not 0 < ratio < 1:
            raise ValueError(f"The spatial mask ratio must lie in (0, 1) (--mask_ratio), got {ratio}.")
        if patch_size < 1:
            raise ValueError(f"The mask patch size must be >= 1 (--mask_patch_size), got {patch_size}.")
        self.ratio, self.patch_size = ratio, patch_size

    def mask(self, batch_size: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """A (B, H, W) boolean mask, True where a pixel is masked."""
        size = self.patch_size
        shifts = torch.randint(size, (batch_size, 2), device=device)
        # The patch row (column) of each pixel: (B, H) and (B, W).
        rows = (torch.arange(height, device=device) + shifts[:, :1]) // size
        cols = (torch.arange(width, device=device) + shifts[:, 1:]) // size
        num_rows, num_cols = (height - 1) // size + 2, (width - 1) // size + 2  # enough for any shift
        patches = torch.rand(batch_size, num_rows, num_cols, device=device) < self.ratio
        patches = patches.gather(1, rows[:, :, None].expand(-1, -1, num_cols))  # (B, H, num_cols)
        return patches.gather(2, cols[:, None, :].expand(-1, height, -1))  # (B, H, W)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        batch_size, _, height, width = images.shape
        masked = self.mask(batch_size, height, width, images.device)
        return images * (~masked)[:, None].to(images.dtype), {}

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]:
        """Nothing adapts."""
        return {}


class BalancedSpectralMask:
    """Removes radial frequency bands from each image, with self-adaptive band probabilities.

    `update` must follow the discriminator step's two calls, on the real batch and then on the fake batch
    (`GANLoss` calls them in that order): the removed bands of those two calls are attributed to the logits.
    """

    def __init__(
        self,
        resolution: int,
        num_bands: int = 4,
        bands_per_image: int = 1,
        adapt_rate: float = 0.05,
        temperature: float = 1.0,
        min_share: float = 0.5,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if num_bands < 2:
            raise ValueError(f"Spectral masking needs at least 2 bands (--mask_num_bands), got {num_bands}.")
        if not 1 <= bands_per_image < num_bands:
            raise ValueError(
                f"--mask_bands_per_image must lie in [1, {num_bands - 1}] (fewer than --mask_num_bands "
                f"{num_bands}), got {bands_per_image}."
            )
        if not 0 < adapt_rate <= 1 or temperature <= 0 or not 0 <= min_share <= 1:
            raise ValueError("Need 0 < adapt_rate <= 1, temperature > 0 and 0 <= min_share <= 1.")
        self.band_index = self.radial_bands(resolution, resolution, num_bands)
        counts = torch.bincount(self.band_index.flatten(), minlength=num_bands)
        if (counts == 0).any():
            raise ValueError(
                f"{resolution}×{resolution} images leave some of {num_bands} frequency bands empty "
                f"(coefficients per band: {counts.tolist()}); lower --mask_num_bands."
            )
        self.num_bands, self.bands_per_image = num_bands, bands_per_image
        self.adapt_rate, self.temperature, self.min_share = adapt_rate, temperature, min_share
        self.all_reduce = all_reduce
        self.margins = torch.zeros(num_bands, dtype=torch.float64)
        self.recent_removed_bands: deque[torch.Tensor] = deque(maxlen=2)

    @staticmethod
    def radial_bands(height: int, width: int, num_bands: int) -> torch.Tensor:
        """(H, W) band index of each coefficient of `torch.fft.fft2`: rings of equal width in |f| / max|f|."""
        fy, fx = torch.fft.fftfreq(height, dtype=torch.float64), torch.fft.fftfreq(width, dtype=torch.float64)
        radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
        return (radius / radius.max() * num_bands).long().clamp(max=num_bands - 1)

    @property
    def probabilities(self) -> torch.Tensor:
        """The probability of each band to be removed (as the first draw of an image)."""
        adaptive = torch.softmax(-self.margins / self.temperature, 0)
        return self.min_share / self.num_bands + (1 - self.min_share) * adaptive

    def remove_bands(self, images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        """Zero the FFT coefficients of the bands `removed` (B, K) marks in each image; differentiable."""
        band_index = self.band_index.to(images.device)
        if tuple(band_index.shape) != tuple(images.shape[-2:]):
            raise ValueError(
                f"BalancedSpectralMask was built for {tuple(band_index.shape)} images, got "
                f"{tuple(images.shape[-2:])}."
            )
        keep = ~removed[:, band_index]  # (B, H, W)
        spectrum = torch.fft.fft2(images.to(torch.promote_types(images.dtype, torch.float32))) * keep[:, None]
        return torch.fft.ifft2(spectrum).real.to(images.dtype)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        batch_size = images.shape[0]
        choices = torch.multinomial(
            self.probabilities.float().expand(batch_size, -1), self.bands_per_image, replacement=False
        )
        removed = torch.zeros(batch_size, self.num_bands, dtype=torch.bool)
        removed.scatter_(1, choices, True)
        self.recent_removed_bands.append(removed)
        return self.remove_bands(images, removed.to(images.device)), {}

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]:
        """Move each band's margin towards this step's; returns the band probabilities to log."""
        if len(self.recent_removed_bands) != 2 or [len(m) for m in self.recent_removed_bands] != [
            len(real_logits),
            len(fake_logits),
        ]:
            raise RuntimeError("update() must follow the calls on the real batch and then the fake batch.")
        stats = []
        for removed, logits in zip(self.recent_removed_bands, (real_logits, fake_logits), strict=True):
            removed = removed.to(logits.device, torch.float64)
            stats += [removed.T @ logits.detach().double(), removed.sum(0)]
        stats = torch.stack(stats)  # (4, K): real sums, real counts, fake sums, fake counts
        if self.all_reduce is not None:
            stats = self.all_reduce(stats)
        real_sum, real_count, fake_sum, fake_count = stats.cpu()
        seen = (real_count > 0) & (fake_count > 0)
        margin = real_sum / real_count.clamp(min=1) - fake_sum / fake_count.clamp(min=1)
        self.margins[seen] += self.adapt_rate * (margin[seen] - self.margins[seen])
        return {f"mask_band_{k}_p": p for k, p in enumerate(self.probabilities.tolist())}

    def state_dict(self) -> dict:
        return {"margins": self.margins.clone()}

    def load_state_dict(self, state: dict) -> None:
        margins = state["margins"]
        if margins.shape != self.margins.shape:
            raise ValueError(
                f"The saved spectral mask has {len(margins)} bands, this run {self.num_bands}; resume with "
                "the run's --mask_num_bands."
            )
        self.margins = margins.clone().double()
