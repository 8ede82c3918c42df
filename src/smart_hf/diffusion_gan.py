"""Diffusion-GAN's adaptive forward diffusion of the discriminator's inputs (Wang et al., 2022).

Real and fake samples alike are diffused before the discriminator sees them,

    y = sqrt(alphā_t)·x + sqrt(1 − alphā_t)·sigma·eps,   t = 0 leaves x unchanged,

with betas linear from 1e-4 to 2e-2 over the current number of steps T, and D is told t. The transform is
differentiable, so the generator trains through it. T adapts to how well D separates diffused real data:
every `update_interval` minibatches, r_d = mean(sign(D(diffused real))) and

    p ← clip(p + sign(r_d − d_target) · n / (ada_kimg · 1000), 0, 1),
    T = T_min + round(p · (T_max − T_min)),

where n is the number of real samples seen in the interval (batch · 4 in the paper; all processes together
when `all_reduce` is given). Per-sample t come from a list refreshed whenever T changes: half of its slots
are 0, half drawn from 1..T with p(t) ∝ t ('priority') or uniformly ('uniform').

Choices the paper left open, made here: the list has `num_slots` = 64 slots and each sample draws its t
uniformly from them; the schedule and the list start at T = T_min (p = 0); the sign statistics of an
unfinished interval are checkpointed with p, T and the list, so a resumed run continues exactly.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

T_SAMPLINGS = ("priority", "uniform")


@dataclass
class DiffusionGANConfig:
    """Diffusion-GAN's options (flags `--diffusion_gan` and `--diffusion_gan_<field>`)."""

    enabled: bool = field(
        default=False,
        metadata={
            "flag": "diffusion_gan",
            "help": "Diffusion-GAN: diffuse D's real and fake inputs by an adaptive number of steps T; D is "
            "told t.",
        },
    )
    t_min: int = field(default=5, metadata={"help": "Smallest (and first) T."})
    t_max: int | None = field(
        default=None, metadata={"help": "Largest T (default: 1000 for priority sampling, 500 for uniform)."}
    )
    sampling: str = field(
        default="priority",
        metadata={
            "choices": T_SAMPLINGS,
            "help": "How the non-zero half of the t-list is drawn from 1..T: p(t) ∝ t, or uniformly.",
        },
    )
    d_target: float = field(default=0.6, metadata={"help": "Target of r_d = E[sign(D(diffused real))]."})
    ada_kimg: float = field(
        default=100.0, metadata={"help": "Thousands of real samples for T to go from T_min to T_max."}
    )
    sigma: float = field(default=0.05, metadata={"help": "Noise scale (0.05 for images in [−1, 1])."})

    def __post_init__(self):
        if self.t_max is None:  # the paper's T_max for each sampling
            self.t_max = 1000 if self.sampling == "priority" else 500

    @property
    def num_timesteps(self) -> int:
        """Size of D's timestep input: t = 0..t_max when on, none (0) when off."""
        return self.t_max + 1 if self.enabled else 0

    def build(
        self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> "DiffusionAugment | None":
        if not self.enabled:
            return None
        return DiffusionAugment(
            t_min=self.t_min,
            t_max=self.t_max,
            sampling=self.sampling,
            d_target=self.d_target,
            ada_kimg=self.ada_kimg,
            sigma=self.sigma,
            all_reduce=all_reduce,
        )

    def check(self) -> None:
        if self.enabled:
            self.build()  # the augmentation checks its values


class DiffusionAugment:
    """Diffuses D's inputs with an adaptive number of steps; `(x) -> (y, {"timesteps": t})`.

    Works on any batch shape (B, ...): images (B, C, H, W) and points (B, D) alike. `update` is called once
    per discriminator step with the logits of the (diffused) real batch.
    """

    def __init__(
        self,
        t_min: int = 5,
        t_max: int = 1000,
        sampling: str = "priority",
        d_target: float = 0.6,
        ada_kimg: float = 100.0,
        sigma: float = 0.05,
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        update_interval: int = 4,
        num_slots: int = 64,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if not 1 <= t_min <= t_max:
            raise ValueError(
                f"Diffusion-GAN needs 1 <= t_min <= t_max, got t_min={t_min}, t_max={t_max} "
                "(--diffusion_gan_t_min, --diffusion_gan_t_max)."
            )
        if sampling not in T_SAMPLINGS:
            raise ValueError(f"Unknown Diffusion-GAN t sampling {sampling!r}; choose one of {T_SAMPLINGS}.")
        if not -1 < d_target < 1:
            raise ValueError(
                f"Diffusion-GAN d_target must lie in (-1, 1): r_d is a mean of signs; got {d_target}."
            )
        if ada_kimg <= 0 or sigma <= 0:
            raise ValueError(f"Diffusion-GAN ada_kimg and sigma must be > 0, got {ada_kimg} and {sigma}.")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(
                f"Diffusion-GAN needs 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}."
            )
        if update_interval < 1 or num_slots < 2 or num_slots % 2:
            raise ValueError("update_interval must be >= 1 and num_slots an even number >= 2.")
        self.t_min, self.t_max = t_min, t_max
        self.sampling = sampling
        self.d_target, self.ada_kimg, self.sigma = d_target, ada_kimg, sigma
        self.beta_start, self.beta_end = beta_start, beta_end
        self.update_interval, self.num_slots = update_interval, num_slots
        self.all_reduce = all_reduce
        self.p = 0.0
        self._sign_sum, self._count, self._minibatches = 0.0, 0.0, 0
        self._set_num_steps(t_min)

    @property
    def num_steps(self) -> int:
        """The current T."""
        return self._num_steps

    def _set_num_steps(self, num_steps: int) -> None:
        """Set T, recompute the schedule for it and refresh the t-list."""
        self._num_steps = num_steps
        self.alphas_cumprod = self.schedule(num_steps)
        self.t_list = self.draw_t_list()

    def schedule(self, num_steps: int) -> torch.Tensor:
        """alphā_t for t = 0..T (float32, alphā_0 = 1) of betas linear from beta_start to beta_end over T."""
        betas = torch.linspace(self.beta_start, self.beta_end, num_steps, dtype=torch.float64)
        return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]).float()

    def draw_t_list(self) -> torch.Tensor:
        """`num_slots` timesteps: the first half 0, the second half from 1..T by `sampling`."""
        half, num_steps = self.num_slots // 2, self._num_steps
        if self.sampling == "priority":
            weights = torch.arange(1, num_steps + 1, dtype=torch.float64)
            drawn = torch.multinomial(weights, half, replacement=True) + 1
        else:
            drawn = torch.randint(1, num_steps + 1, (half,))
        return torch.cat([torch.zeros(half, dtype=torch.long), drawn])

    def diffuse(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """y = sqrt(alphā_t)·x + sqrt(1 − alphā_t)·sigma·eps for per-sample `timesteps` in 0..T."""
        alpha_bar = self.alphas_cumprod.to(x.device)[timesteps].to(x.dtype)
        alpha_bar = alpha_bar.reshape(-1, *([1] * (x.ndim - 1)))
        noise = torch.randn_like(x)
        return alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * self.sigma * noise

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        slots = torch.randint(self.num_slots, (x.shape[0],))
        timesteps = self.t_list[slots].to(x.device)
        return self.diffuse(x, timesteps), {"timesteps": timesteps}

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]:
        """Accumulate sign(D(real)); every `update_interval` calls, adapt p and T. Returns values to log."""
        self._sign_sum += real_logits.detach().float().sign().sum().item()
        self._count += real_logits.numel()
        self._minibatches += 1
        logs = {"diffusion_T": float(self._num_steps), "diffusion_p": self.p}
        if self._minibatches % self.update_interval:
            return logs
        stats = torch.tensor([self._sign_sum, self._count], device=real_logits.device, dtype=torch.float64)
        if self.all_reduce is not None:
            stats = self.all_reduce(stats)
        sign_sum, count = stats.tolist()
        self._sign_sum, self._count, self._minibatches = 0.0, 0.0, 0
        r_d = sign_sum / count
        self.adjust(r_d, count)
        return {"diffusion_T": float(self._num_steps), "diffusion_p": self.p, "diffusion_r_d": r_d}

    def adjust(self, r_d: float, num_samples: float) -> None:
        """One step of the rule: raise p (more noise) when D is too sure of real data, lower it otherwise."""
        direction = (r_d > self.d_target) - (r_d < self.d_target)
        self.p = min(1.0, max(0.0, self.p + direction * num_samples / (self.ada_kimg * 1000)))
        num_steps = self.t_min + round(self.p * (self.t_max - self.t_min))
        if num_steps != self._num_steps:
            self._set_num_steps(num_steps)

    def state_dict(self) -> dict:
        return {
            "p": self.p,
            "num_steps": self._num_steps,
            "t_list": self.t_list.clone(),
            "sign_sum": self._sign_sum,
            "count": self._count,
            "minibatches": self._minibatches,
        }

    def load_state_dict(self, state: dict) -> None:
        num_steps = state["num_steps"]
        if not self.t_min <= num_steps <= self.t_max:
            raise ValueError(
                f"The saved Diffusion-GAN T={num_steps} lies outside [t_min, t_max] = [{self.t_min}, "
                f"{self.t_max}]; resume with the run's --diffusion_gan_t_min/--diffusion_gan_t_max."
            )
        self.p = state["p"]
        self._num_steps = num_steps
        self.alphas_cumprod = self.schedule(num_steps)
        self.t_list = state["t_list"].clone()
        self._sign_sum, self._count = state["sign_sum"], state["count"]
        self._minibatches = state["minibatches"]
