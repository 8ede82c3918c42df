"""Annealed composite-functional-gradient refinement nested in the GAN update (CFG, Johnson & Zhang 2018;
NATS, Wan et al., TCSVT 2024).

CFG moves generated samples along the discriminator's input gradient, x ← x + eta·∇_x D(x); for a logistic
D, ∇_x D = ∇ log p_data − ∇ log p_G, so each step follows the difference of the real and generated scores.
NATS puts an annealed weight in front of that step and nests it in an ordinary GAN update. Here, with
x_0 = G(z) and K steps

    x_{k+1} = clip(x_k + eta · w_k(s) · ∇_x D(x_k)),   w_k(s) = a(s) · decay^k,   k = 0 .. K−1,

at generator step s, the nesting is:
- discriminator phase: D is trained on the refined fakes x_K instead of G(z) (CFG trains each D_t on the
  samples stepped so far);
- generator phase: besides its adversarial loss, G regresses onto its refined samples (CFG's refit of G̃),
  L = weight · ½ E ||G(z) − sg(x_K)||², summed over a sample's elements and averaged over the batch, so its
  gradient on G(z) is exactly the refinement step, −(x_K − x_0), at the scale of the adversarial loss.
D's gradient is taken through the same input augmentations as the generator's adversarial loss.

The weight's formula is unpublished; the choice made here: a(s) anneals from 1 at s = 0 to `final_weight`
at s = `anneal_steps` (linearly, by a half cosine, or not at all) and stays there, so by default (final 0,
annealing over the whole run) the generator has absorbed the refinement when training ends and samples in
one step without D. Within one refinement the steps keep the same weight unless `step_decay` < 1 (a
coarse-to-fine refinement, each step `decay` times the previous one). Defaults: K = 5, eta = 0.25 (the low
end of CFG's 0.25–1, with fewer than CFG's ~15 steps to bound the cost: K extra D passes and input gradients
per phase), linear annealing, regression weight 1; refined images are clipped to [−1, 1].
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

ANNEAL_SCHEDULES = ("constant", "linear", "cosine")


def refine_samples(
    discriminator: Callable[[torch.Tensor], torch.Tensor],
    samples: torch.Tensor,
    step_size: float,
    weights: list[float],
    clip: tuple[float, float] | None = None,
) -> torch.Tensor:
    """x ← x + step_size · w · ∇_x D(x) for each w in `weights` (then clipped to `clip`); returns a detached
    tensor. `discriminator` maps a batch to one logit per sample. Zero weights are skipped, so all-zero
    weights return `samples` unchanged. D's parameters receive no gradient."""
    x = samples.detach()
    for weight in weights:
        if weight == 0:
            continue
        with torch.enable_grad():
            x = x.requires_grad_(True)
            (gradient,) = torch.autograd.grad(discriminator(x).float().sum(), x)
        x = (x + step_size * weight * gradient.to(x.dtype)).detach()
        if clip is not None:
            x = x.clamp(*clip)
    return x


@dataclass
class NATSConfig:
    """NATS's options (flags `--nats` and `--nats_<field>`), checked before anything is built."""

    enabled: bool = field(
        default=False,
        metadata={
            "flag": "nats",
            "help": "Refine fakes along D's input gradient, x ← x + eta·w·∇_x D(x); D trains on the refined "
            "fakes, G also regresses onto them; w anneals over training. Image exports then include the "
            "discriminator.",
        },
    )
    num_steps: int = field(default=5, metadata={"flag": "nats_steps", "help": "Refinement steps K."})
    step_size: float = field(default=0.25, metadata={"help": "Step size eta."})
    anneal: str = field(
        default="linear",
        metadata={"choices": ANNEAL_SCHEDULES, "help": "How the weight goes from 1 to --nats_final_weight."},
    )
    anneal_steps: int | None = field(
        default=None, metadata={"help": "Generator steps of the annealing (default: --max_train_steps)."}
    )
    final_weight: float = field(default=0.0, metadata={"help": "Weight after the annealing."})
    step_decay: float = field(default=1.0, metadata={"help": "Each refinement step's weight times this."})
    regression_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of G's regression onto its refined samples (0 = D-side only)."},
    )

    def check(self) -> None:
        if self.anneal == "constant" and (self.anneal_steps is not None or self.final_weight != 0.0):
            raise ValueError(
                "--nats_anneal constant keeps the weight at 1: drop --nats_anneal_steps and "
                "--nats_final_weight, or choose --nats_anneal linear or cosine."
            )
        self.build(clip=None)  # the refiner checks its values

    def build(self, clip: tuple[float, float] | None) -> "NATSRefiner":
        """The refiner; refined samples are clipped to `clip` (the generator's range, None for toy data)."""
        return NATSRefiner(
            num_steps=self.num_steps,
            step_size=self.step_size,
            anneal=self.anneal,
            anneal_steps=self.anneal_steps,
            final_weight=self.final_weight,
            step_decay=self.step_decay,
            regression_weight=self.regression_weight,
            clip=clip,
        )


class NATSRefiner:
    """The annealed refinement and the generator's regression onto it (see the module docstring).

    Args:
        num_steps: K, refinement steps per phase.
        step_size: eta.
        anneal: "constant", "linear" or "cosine": how the weight a(s) goes from 1 to `final_weight`.
        anneal_steps: generator steps over which a(s) anneals (e.g. the run's length); not used by "constant".
        final_weight: a(s) from `anneal_steps` on.
        step_decay: w_k = a(s) · step_decay^k, in (0, 1].
        regression_weight: weight of the generator's regression onto its refined samples (0 = none).
        clip: the data range refined samples are clipped to ((−1, 1) for images; None for toy data).
    """

    def __init__(
        self,
        num_steps: int = 5,
        step_size: float = 0.25,
        anneal: str = "linear",
        anneal_steps: int | None = None,
        final_weight: float = 0.0,
        step_decay: float = 1.0,
        regression_weight: float = 1.0,
        clip: tuple[float, float] | None = None,
    ):
        if num_steps < 1:
            raise ValueError(f"NATS needs num_steps >= 1, got {num_steps} (--nats_steps).")
        if step_size <= 0:
            raise ValueError(f"NATS step_size must be > 0, got {step_size} (--nats_step_size).")
        if anneal not in ANNEAL_SCHEDULES:
            raise ValueError(f"Unknown NATS annealing {anneal!r}; choose one of {ANNEAL_SCHEDULES}.")
        if anneal != "constant" and (anneal_steps is None or anneal_steps < 1):
            raise ValueError(
                f"NATS {anneal} annealing needs anneal_steps >= 1 (e.g. the number of training steps), got "
                f"{anneal_steps} (--nats_anneal_steps)."
            )
        if not 0 <= final_weight <= 1:
            raise ValueError(
                f"NATS final_weight must lie in [0, 1], got {final_weight} (--nats_final_weight)."
            )
        if not 0 < step_decay <= 1:
            raise ValueError(f"NATS step_decay must lie in (0, 1], got {step_decay} (--nats_step_decay).")
        if regression_weight < 0:
            raise ValueError(
                f"NATS regression_weight must be >= 0, got {regression_weight} (--nats_regression_weight)."
            )
        self.num_steps, self.step_size = num_steps, step_size
        self.anneal, self.anneal_steps, self.final_weight = anneal, anneal_steps, final_weight
        self.step_decay, self.regression_weight = step_decay, regression_weight
        self.clip = clip

    def weight_at(self, step: int) -> float:
        """a(s): the annealed weight at generator step `step`."""
        if self.anneal == "constant":
            return 1.0
        progress = min(step / self.anneal_steps, 1.0)
        if self.anneal == "linear":
            shape = 1 - progress
        else:
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        return self.final_weight + (1 - self.final_weight) * shape

    def step_weights(self, step: int) -> list[float]:
        """w_0 .. w_{K−1} at generator step `step`."""
        weight = self.weight_at(step)
        return [weight * self.step_decay**k for k in range(self.num_steps)]

    def is_active(self, step: int) -> bool:
        return self.weight_at(step) > 0

    def refine(
        self, discriminator: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor, step: int
    ) -> torch.Tensor:
        """x_K from x_0 = `samples` at generator step `step` (detached)."""
        return refine_samples(discriminator, samples, self.step_size, self.step_weights(step), self.clip)

    def regression_loss(self, fake: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        """weight · ½ ||fake − sg(refined)||², summed per sample, averaged over the batch."""
        difference = (fake.float() - refined.detach().float()).reshape(fake.shape[0], -1)
        return self.regression_weight * 0.5 * difference.pow(2).sum(1).mean()
