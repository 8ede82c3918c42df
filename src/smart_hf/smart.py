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
- `batch_shrink` N > 1 computes the term on the first len(batch) // N generated samples only (StyleGAN2's
  `pl_batch_shrink` for its path-length regularizer): N times fewer score evaluations and less activation
  memory, for a noisier term of the same expected size (a mean over elements).
- `decay_steps` > 0 lowers lambda linearly to 0 over that many generator steps from `decay_start` on: the pull
  sharpens the samples, then leaves the last steps to the adversarial loss, which shares mass between modes.
- `sample_weighting="discriminator"` weights each sample's term by p_i = sigmoid(−D(x_i)), D's belief that it
  is fake, normalised to mean 1 over the batch (detached): the pull acts on the samples off the data (the
  bridges between modes) and less on those D already takes for real. The total strength is unchanged.
"""

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from smart_hf.scores import ScoreFunction

GRADIENT_MODES = ("full", "sds")
SAMPLE_WEIGHTINGS = ("none", "discriminator")


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
    batch_shrink: int = field(
        default=1,
        metadata={
            "help": "Compute the term on the first len(batch) // N generated samples (StyleGAN2's "
            "pl_batch_shrink): about N times cheaper, noisier."
        },
    )
    decay_start: int = field(default=0, metadata={"help": "Generator step where lambda starts to decay."})
    decay_steps: int = field(
        default=0, metadata={"help": "Linear lambda decay to 0 over N generator steps (0 = no decay)."}
    )
    sample_weighting: str = field(
        default="none",
        metadata={
            "choices": SAMPLE_WEIGHTINGS,
            "help": "'discriminator': weight each sample's pull by sigmoid(-D(x)) (D's belief that it is "
            "fake), normalised to mean 1 over the batch.",
        },
    )

    def check(self) -> None:
        if not self.weight >= 0:  # also refuses NaN
            raise ValueError(f"SMaRt weight (lambda) must be >= 0, got {self.weight} (--smart_weight).")
        if self.interval < 1:
            raise ValueError(f"SMaRt interval must be >= 1 (1 = every generator step), got {self.interval}.")
        if self.noise_draws < 1:
            raise ValueError(f"SMaRt needs at least one noise draw per sample, got {self.noise_draws}.")
        if self.batch_shrink < 1:
            raise ValueError(
                f"SMaRt batch shrink must be >= 1 (1 = the whole batch), got {self.batch_shrink}."
            )
        if self.warmup_steps < 0 or self.warmup_start < 0:
            raise ValueError("SMaRt warm-up steps and start must be >= 0.")
        if self.decay_steps < 0 or self.decay_start < 0:
            raise ValueError("SMaRt decay steps and start must be >= 0.")
        if self.sample_weighting not in SAMPLE_WEIGHTINGS:
            raise ValueError(
                f"Unknown SMaRt sample weighting {self.sample_weighting!r}; "
                f"choose one of {SAMPLE_WEIGHTINGS}."
            )
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
        batch_shrink: int = 1,
        decay_start: int = 0,
        decay_steps: int = 0,
        sample_weighting: str = "none",
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
            batch_shrink=batch_shrink,
            decay_start=decay_start,
            decay_steps=decay_steps,
            sample_weighting=sample_weighting,
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
        self.batch_shrink = batch_shrink
        self.decay_start, self.decay_steps = decay_start, decay_steps
        self.sample_weighting = sample_weighting

    @classmethod
    def from_config(cls, score: ScoreFunction, config: SmartConfig) -> "SmartRegularizer":
        return cls(score, **asdict(config))

    def weight_at(self, step: int) -> float:
        """lambda at generator step `step`, after warm-up (0 before `warmup_start`) and decay."""
        if step < self.warmup_start:
            return 0.0
        weight = self.weight
        if self.warmup_steps > 0:
            weight *= min(1.0, (step - self.warmup_start) / self.warmup_steps)
        if self.decay_steps > 0 and step >= self.decay_start:
            weight *= max(0.0, 1.0 - (step - self.decay_start) / self.decay_steps)
        return weight

    def sample_weights(self, fake_logits: torch.Tensor) -> torch.Tensor | None:
        """Each sample's weight from D's logits on the fakes (None without `sample_weighting`)."""
        if self.sample_weighting == "none":
            return None
        fake_probability = torch.sigmoid(-fake_logits.detach().float())
        return fake_probability / fake_probability.mean().clamp_min(1e-12)

    def is_active(self, step: int) -> bool:
        return self.weight_at(step) > 0 and step % self.interval == 0

    def score_matching_loss(
        self,
        samples: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        sample_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(differentiable surrogate, plain denoising error) for `samples` in the score model's data range;
        `sample_weights` (one per sample) weight each sample's share of the surrogate."""
        if self.noise_draws > 1:
            samples = samples.repeat(self.noise_draws, *[1] * (samples.ndim - 1))
            class_labels = None if class_labels is None else class_labels.repeat(self.noise_draws)
            sample_weights = None if sample_weights is None else sample_weights.repeat(self.noise_draws)
        batch = samples.shape[0]
        timesteps = torch.randint(
            self.t_min, self.t_max + 1, (batch,), device=samples.device, generator=generator
        )
        noise = torch.randn(samples.shape, device=samples.device, dtype=samples.dtype, generator=generator)
        x_t = self.score.add_noise(samples, noise, timesteps)
        if self.gradient_mode == "full":
            eps_hat = self.score(x_t, timesteps, class_labels)
            loss = F.mse_loss(eps_hat.float(), noise.float())
            if sample_weights is None:
                return loss, loss.detach()
            return _weighted_mse(eps_hat.float(), noise.float(), sample_weights), loss.detach()
        with torch.no_grad():
            eps_hat = self.score(x_t, timesteps, class_labels)
            a_t, s_t = self.score.signal_and_noise_scales(timesteps, samples.ndim)
            gradient = 2.0 * (a_t / s_t) * (eps_hat.float() - noise.float())
            target = (samples.float() - gradient).detach()
        if sample_weights is None:
            surrogate = 0.5 * F.mse_loss(samples.float(), target)
        else:
            surrogate = 0.5 * _weighted_mse(samples.float(), target, sample_weights)
        return surrogate, F.mse_loss(eps_hat.float(), noise.float())

    def __call__(
        self,
        samples: torch.Tensor,
        step: int,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        sample_weights: torch.Tensor | None = None,
    ) -> SmartOutput:
        """The weighted regularizer at generator step `step` (zero on steps the lazy schedule skips), on the
        first len(samples) // batch_shrink samples, each weighted by `sample_weights` when given."""
        if not self.is_active(step):
            zero = samples.new_zeros((), dtype=torch.float32)
            return SmartOutput(loss=zero, score_matching_loss=zero)
        if self.batch_shrink > 1:
            kept = len(samples) // self.batch_shrink
            if kept == 0:
                raise ValueError(
                    f"--smart_batch_shrink {self.batch_shrink} leaves no sample of a batch of "
                    f"{len(samples)}: use a shrink of at most the batch size (per process)."
                )
            samples = samples[:kept]
            class_labels = None if class_labels is None else class_labels[:kept]
            sample_weights = None if sample_weights is None else sample_weights[:kept]
        surrogate, score_matching = self.score_matching_loss(samples, class_labels, generator, sample_weights)
        weight = self.weight_at(step) * (self.interval if self.scale_by_interval else 1)
        return SmartOutput(loss=weight * surrogate, score_matching_loss=score_matching)


def _weighted_mse(x: torch.Tensor, y: torch.Tensor, sample_weights: torch.Tensor) -> torch.Tensor:
    """mean_i w_i · mean_elements (x_i − y_i)²."""
    per_sample = (x - y).pow(2).reshape(x.shape[0], -1).mean(1)
    return (sample_weights.to(per_sample) * per_sample).mean()
