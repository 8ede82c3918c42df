"""SMaRt: score matching regularity for GAN generators (Xia et al., ICML 2024).

    L_smart = lambda · E_{z,eps,t,c} || eps_hat(a_t·G(z, c) + s_t·eps, t, c) − eps ||²  (mean over elements)

with a frozen, pretrained noise predictor eps_hat. The loss pulls generated samples onto the data manifold the
score model has learned. It trains the generator only: the score model is never updated.

Choices the paper left open, made here:
- t is drawn uniformly from the integer range [t_min, t_max] of the score model's schedule.
- Lazy regularization adds the term on every `interval`-th generator step only. With `scale_by_interval` the
  term is multiplied by the interval on those steps (StyleGAN2's convention, which keeps the average strength
  independent of the interval); off by default, as the paper quotes lambda without it.
- The lambda warm-up is linear from 0 over `warmup_steps` generator steps, starting after `warmup_start`.
- `gradient_mode="sds"` drops the score model's Jacobian: the gradient reaching x0 is
  2·(a_t/s_t)·(eps_hat − eps)/N, i.e. the full gradient with ∂eps_hat/∂x_t replaced by I/s_t (exact for a
  point mass, and for any score that is linear in x_t with that slope). It needs no backward pass through
  the score model, so it is cheaper.
- `noise_draws` > 1 averages the term over that many (t, eps) draws per sample: a less noisy gradient for as
  many times the score evaluations.
"""

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from smart_hf.scores import ScoreFunction

GRADIENT_MODES = ("full", "sds")


@dataclass
class SmartConfig:
    """SMaRt's options (command-line flags `--smart_<field>`), checked before anything is built."""

    weight: float = field(default=0.1, metadata={"help": "lambda; 0 trains the plain GAN."})
    t_min: int = 25
    t_max: int = 35
    interval: int = field(default=8, metadata={"help": "Lazy: apply every N generator steps."})
    warmup_start: int = field(default=0, metadata={"help": "Generator step where lambda starts to rise."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear lambda warm-up length."})
    gradient_mode: str = field(default="full", metadata={"flag": "smart_gradient", "choices": GRADIENT_MODES})
    scale_by_interval: bool = field(default=False, metadata={"help": "Multiply lambda by the interval."})
    noise_draws: int = field(
        default=1,
        metadata={
            "help": "(t, noise) draws per generated sample, averaged: a less noisy SMaRt gradient for as "
            "many times the score evaluations."
        },
    )

    def check(self) -> None:
        if not self.weight >= 0:  # also refuses NaN
            raise ValueError(f"SMaRt weight (lambda) must be >= 0, got {self.weight} (--smart_weight).")
        if self.interval < 1:
            raise ValueError(f"SMaRt interval must be >= 1 (1 = every generator step), got {self.interval}.")
        if self.noise_draws < 1:
            raise ValueError(f"SMaRt needs at least one noise draw per sample, got {self.noise_draws}.")
        if self.warmup_steps < 0 or self.warmup_start < 0:
            raise ValueError("SMaRt warm-up steps and start must be >= 0.")
        if self.gradient_mode not in GRADIENT_MODES:
            raise ValueError(
                f"Unknown SMaRt gradient mode {self.gradient_mode!r}; choose one of {GRADIENT_MODES}."
            )


@dataclass
class SmartOutput:
    """`loss` is what to add to the generator objective (weight applied); `score_matching_loss` is the plain
    denoising error, for logging."""

    loss: torch.Tensor
    score_matching_loss: torch.Tensor


class SmartRegularizer:
    """Score matching regularity term for the generator, lazily applied."""

    def __init__(
        self,
        score: ScoreFunction,
        weight: float = 0.1,
        t_min: int = 25,
        t_max: int = 35,
        interval: int = 8,
        warmup_steps: int = 0,
        warmup_start: int = 0,
        gradient_mode: str = "full",
        scale_by_interval: bool = False,
        noise_draws: int = 1,
    ):
        config = SmartConfig(
            weight=weight,
            t_min=t_min,
            t_max=t_max,
            interval=interval,
            warmup_start=warmup_start,
            warmup_steps=warmup_steps,
            gradient_mode=gradient_mode,
            scale_by_interval=scale_by_interval,
            noise_draws=noise_draws,
        )
        config.check()
        score.check_timestep_range(t_min, t_max)
        self.score = score.eval().requires_grad_(False)
        self.weight = weight
        self.t_min, self.t_max = t_min, t_max
        self.interval = interval
        self.warmup_steps, self.warmup_start = warmup_steps, warmup_start
        self.gradient_mode = gradient_mode
        self.scale_by_interval = scale_by_interval
        self.noise_draws = noise_draws

    @classmethod
    def from_config(cls, score: ScoreFunction, config: SmartConfig) -> "SmartRegularizer":
        return cls(score, **asdict(config))

    def weight_at(self, step: int) -> float:
        """lambda at generator step `step`, after warm-up (0 before `warmup_start`)."""
        if step < self.warmup_start:
            return 0.0
        if self.warmup_steps == 0:
            return self.weight
        return self.weight * min(1.0, (step - self.warmup_start) / self.warmup_steps)

    def is_active(self, step: int) -> bool:
        return self.weight_at(step) > 0 and step % self.interval == 0

    def score_matching_loss(
        self,
        samples: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(differentiable surrogate, plain denoising error) for `samples` in the score model's data range."""
        if self.noise_draws > 1:
            samples = samples.repeat(self.noise_draws, *[1] * (samples.ndim - 1))
            class_labels = None if class_labels is None else class_labels.repeat(self.noise_draws)
        batch = samples.shape[0]
        timesteps = torch.randint(
            self.t_min, self.t_max + 1, (batch,), device=samples.device, generator=generator
        )
        noise = torch.randn(samples.shape, device=samples.device, dtype=samples.dtype, generator=generator)
        x_t = self.score.add_noise(samples, noise, timesteps)
        if self.gradient_mode == "full":
            eps_hat = self.score(x_t, timesteps, class_labels)
            loss = F.mse_loss(eps_hat.float(), noise.float())
            return loss, loss.detach()
        with torch.no_grad():
            eps_hat = self.score(x_t, timesteps, class_labels)
            a_t, s_t = self.score.signal_and_noise_scales(timesteps, samples.ndim)
            gradient = 2.0 * (a_t / s_t) * (eps_hat.float() - noise.float())
            target = (samples.float() - gradient).detach()
        surrogate = 0.5 * F.mse_loss(samples.float(), target)
        return surrogate, F.mse_loss(eps_hat.float(), noise.float())

    def __call__(
        self,
        samples: torch.Tensor,
        step: int,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SmartOutput:
        """The weighted regularizer at generator step `step` (zero on steps the lazy schedule skips)."""
        if not self.is_active(step):
            zero = samples.new_zeros((), dtype=torch.float32)
            return SmartOutput(loss=zero, score_matching_loss=zero)
        surrogate, score_matching = self.score_matching_loss(samples, class_labels, generator)
        weight = self.weight_at(step) * (self.interval if self.scale_by_interval else 1)
        return SmartOutput(loss=weight * surrogate, score_matching_loss=score_matching)
