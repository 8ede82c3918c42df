"""Distribution matching against a learned score of the generator's own samples (`--fake_score`), in the
spirit of DMD (Yin et al., CVPR 2024), DMD2 (Yin et al., NeurIPS 2024) and SiD (Zhou et al., ICML 2024).

SMaRt's `sds` gradient on a generated sample x0 is 2·(a_t/s_t)·(eps_real(x_t, t) − eps) with
x_t = a_t·x0 + s_t·eps: the injected noise eps stands for the score of a point mass at x0, so every sample is
pulled onto its nearest mode of the data whatever the modes' shares (mode seeking). Distribution matching puts
eps_fake(x_t, t) in its place, the noise prediction of a small model trained online on the generator's
diffused samples:

    gradient on x0 = w · (eps_real(x_t, t) − eps_fake(x_t, t)),

the gradient of KL(p_G,t || p_data,t) up to w(t). It vanishes once the generator's diffused distribution is
the data's, so it moves mass between modes until their shares match instead of only sharpening each sample.

- `gradient_weighting="dmd2"` (default) is DMD2's normalisation, w = 1 / mean|eps_real − eps| per sample
  (DMD2's (x0_fake − x0_real) / mean|x0 − x0_real| written with noise predictions: the s_t/a_t cancel),
  floored at `NORMALIZER_FLOOR` so a sample whose noise the real score guesses almost exactly cannot blow up;
  `"smart"` is SMaRt's 2·a_t/s_t, which makes the term SMaRt's exactly when eps_fake = eps.
- The generator's surrogate is ½·mean((x0 − sg(x0 − gradient))²) (mean over elements), as SMaRt's `sds`, so
  `weight` is on SMaRt's lambda scale with `"smart"` weighting.
- t is drawn uniformly from [t_min, t_max] for both the fake score's training and the generator's term; the
  default spans most of the schedule, where diffused modes overlap and their shares can be compared.
- The fake score trains in its own phase (`fake_score_loss`): the denoising loss on detached generated
  samples, with its own optimizer, from the first step, so it follows the generator before the term starts
  (`warmup_start`, then a linear ramp over `warmup_steps`). The frozen real score is never updated.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from smart_hf.scores import ScoreFunction

GRADIENT_WEIGHTINGS = ("dmd2", "smart")
NORMALIZER_FLOOR = 1e-2


@dataclass
class FakeScoreConfig:
    """Distribution matching's options (flags `--fake_score` and `--fake_score_<field>`)."""

    enabled: bool = field(
        default=False,
        metadata={
            "flag": "fake_score",
            "help": "Train a score model of the generator's own samples online and add the distribution-"
            "matching term w·(eps_real − eps_fake) on G's samples (DMD2-style).",
        },
    )
    weight: float = field(default=1.0, metadata={"help": "Weight of the distribution-matching term."})
    t_min: int = 20
    t_max: int = 980
    gradient_weighting: str = field(
        default="dmd2",
        metadata={
            "choices": GRADIENT_WEIGHTINGS,
            "help": "dmd2: divide by mean|eps_real − eps| per sample; smart: SMaRt's 2·a_t/s_t.",
        },
    )
    warmup_start: int = field(default=0, metadata={"help": "Generator step where the term starts to rise."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up of the term's weight."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam rate of the fake score model."})
    updates: int = field(default=1, metadata={"help": "Fake score steps per generator step."})
    hidden_dim: int = field(default=128, metadata={"help": "Toy data: width of the fake score MLP."})
    num_layers: int = field(default=3, metadata={"help": "Toy data: residual blocks of the fake score MLP."})
    base_channels: int = field(default=32, metadata={"help": "Images: the fake score UNet's base width."})

    def check(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"--fake_score_weight must be >= 0, got {self.weight}.")
        if self.gradient_weighting not in GRADIENT_WEIGHTINGS:
            raise ValueError(
                f"Unknown --fake_score_gradient_weighting {self.gradient_weighting!r}; choose one of "
                f"{GRADIENT_WEIGHTINGS}."
            )
        if self.warmup_start < 0 or self.warmup_steps < 0:
            raise ValueError("--fake_score_warmup_start and --fake_score_warmup_steps must be >= 0.")
        if not self.learning_rate > 0:
            raise ValueError(f"--fake_score_learning_rate must be > 0, got {self.learning_rate}.")
        if self.updates < 1:
            raise ValueError(f"--fake_score_updates must be >= 1, got {self.updates}.")
        if self.hidden_dim < 1 or self.num_layers < 1 or self.base_channels < 1:
            raise ValueError("The fake score model's width and depth must be >= 1.")


def build_fake_score_model(
    config: FakeScoreConfig, sample_shape: tuple[int, ...], num_classes: int | None = None
) -> nn.Module:
    """A fresh noise predictor for samples of `sample_shape`: an MLP for points, a small UNet for images."""
    if len(sample_shape) == 1:
        from smart_hf.models import MLPNoisePredictor

        return MLPNoisePredictor(sample_shape[0], config.hidden_dim, config.num_layers)
    from diffusers import UNet2DModel

    channels, resolution = sample_shape[0], sample_shape[1]
    width = config.base_channels
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(width, 2 * width),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=min(8, width),
        num_class_embeds=num_classes or None,
    )


def predict_noise(
    model: nn.Module, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None
) -> torch.Tensor:
    """eps_hat of a diffusers-style noise predictor (`.sample` output), with class labels when it has some."""
    if class_labels is not None and getattr(model.config, "num_class_embeds", None):
        return model(x_t, timesteps, class_labels=class_labels).sample
    return model(x_t, timesteps).sample


@dataclass
class DistributionMatchingOutput:
    """`loss` to add to the generator objective (weight applied); `gradient_norm` the mean per-sample norm of
    the unweighted gradient, for logging."""

    loss: torch.Tensor
    gradient_norm: torch.Tensor


class DistributionMatching:
    """The generator's distribution-matching term and the fake score's denoising loss (module docstring)."""

    def __init__(
        self,
        real_score: ScoreFunction,
        fake_model: nn.Module,
        weight: float = 1.0,
        t_min: int = 20,
        t_max: int = 980,
        gradient_weighting: str = "dmd2",
        warmup_start: int = 0,
        warmup_steps: int = 0,
    ):
        FakeScoreConfig(
            weight=weight,
            t_min=t_min,
            t_max=t_max,
            gradient_weighting=gradient_weighting,
            warmup_start=warmup_start,
            warmup_steps=warmup_steps,
        ).check()
        real_score.check_timestep_range(t_min, t_max)
        self.real_score = real_score.eval().requires_grad_(False)
        self.fake_model = fake_model
        self.weight, self.t_min, self.t_max = weight, t_min, t_max
        self.gradient_weighting = gradient_weighting
        self.warmup_start, self.warmup_steps = warmup_start, warmup_steps

    @classmethod
    def from_config(
        cls, real_score: ScoreFunction, fake_model: nn.Module, config: FakeScoreConfig
    ) -> "DistributionMatching":
        return cls(
            real_score,
            fake_model,
            weight=config.weight,
            t_min=config.t_min,
            t_max=config.t_max,
            gradient_weighting=config.gradient_weighting,
            warmup_start=config.warmup_start,
            warmup_steps=config.warmup_steps,
        )

    def weight_at(self, step: int) -> float:
        """The term's weight at generator step `step` (0 before `warmup_start`, then a linear ramp)."""
        if step < self.warmup_start:
            return 0.0
        if self.warmup_steps == 0:
            return self.weight
        return self.weight * min(1.0, (step - self.warmup_start) / self.warmup_steps)

    def is_active(self, step: int) -> bool:
        return self.weight_at(step) > 0

    def _diffuse(
        self, samples: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        timesteps = torch.randint(
            self.t_min, self.t_max + 1, (samples.shape[0],), device=samples.device, generator=generator
        )
        noise = torch.randn(samples.shape, device=samples.device, dtype=samples.dtype, generator=generator)
        return self.real_score.add_noise(samples, noise, timesteps), noise, timesteps

    def fake_score_loss(
        self,
        samples: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The fake score model's denoising loss on (detached) generated samples."""
        x_t, noise, timesteps = self._diffuse(samples.detach(), generator)
        eps_fake = predict_noise(self.fake_model, x_t, timesteps, class_labels)
        return F.mse_loss(eps_fake.float(), noise.float())

    def __call__(
        self,
        samples: torch.Tensor,
        step: int,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> DistributionMatchingOutput:
        """The weighted term on generated `samples` at generator step `step` (the fake model gets none)."""
        with torch.no_grad():
            x_t, noise, timesteps = self._diffuse(samples.detach(), generator)
            eps_real = self.real_score(x_t, timesteps, class_labels).float()
            eps_fake = predict_noise(self.fake_model, x_t, timesteps, class_labels).float()
            difference = eps_real - eps_fake
            reduce_dims = tuple(range(1, samples.ndim))
            if self.gradient_weighting == "dmd2":
                normalizer = (eps_real - noise.float()).abs().mean(reduce_dims, keepdim=True)
                gradient = difference / normalizer.clamp_min(NORMALIZER_FLOOR)
            else:
                a_t, s_t = self.real_score.signal_and_noise_scales(timesteps, samples.ndim)
                gradient = 2.0 * (a_t / s_t) * difference
            target = (samples.float() - gradient).detach()
        surrogate = 0.5 * F.mse_loss(samples.float(), target)
        gradient_norm = gradient.reshape(gradient.shape[0], -1).norm(dim=1).mean()
        return DistributionMatchingOutput(self.weight_at(step) * surrogate, gradient_norm)
