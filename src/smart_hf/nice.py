"""NICE: noise-modulated consistency regularization of the discriminator (Ni & Koniusz, NeurIPS 2023).

Chosen intermediate features h of D are multiplied by Gaussian noise, h ← h ⊙ z with z ~ N(1, beta²)
elementwise, and D is asked to give the same output for two independent draws of the noise:

    L_con = weight · ( E||D_z1(real) − D_z2(real)||² + E||D_z1(fake) − D_z2(fake)||² ),

which penalises the first- and second-order gradients of D's later layers with respect to their features
(a feature-space analogue of a gradient penalty that grows with beta²). beta adapts to D's overfitting: every
`interval` discriminator steps, r = E[sign(D(real))] over those steps (all processes together when
`all_reduce` is given) moves it by

    beta ← clip(beta + sign(r − target) · beta_max · n / (ada_kimg · 1000), 0, beta_max),

n being the real samples seen in the interval, so beta crosses [0, beta_max] in `ada_kimg` thousand images,
whatever the batch size (ADA's rule, as Diffusion-GAN uses it).

The noise enters through forward hooks on D's submodules, so the model files stay unchanged (and exportable).
Choices the paper left open, made here:
- Where: the later half of D's downsampling stages — `downsample` convolutions of `DCGANDiscriminator`,
  residual `blocks` of `ResNetDiscriminator`, the hidden activations of `ToyDiscriminator` (at least one).
  Later features are the class-like ones a small-data D memorises; noise on the first layers would act on
  near-pixel features, which is input augmentation's job. Any submodules can be named instead.
- When: in the discriminator phase only. The generator learns from the noise-free D (E[z] = 1); its
  gradient is then not blurred by noise that D is merely trained to withstand.
- The consistency term compares D's logits (the output of the noisy part), on real and fake inputs; the
  first noisy pass is the adversarial one, so it costs one extra D pass per input, skipped while beta = 0.
- Defaults: beta starts at 0, target 0.6 (ADA's), beta_max 1.0 (the noise of dropout with rate 0.5:
  beta² = p / (1 − p)), ada_kimg 100, interval 4, weight 1.0.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from smart_hf.models import DCGANDiscriminator, ResNetDiscriminator, ToyDiscriminator


def default_noise_modules(discriminator: nn.Module) -> list[str]:
    """Names of the submodules whose outputs NICE modulates by default: the later half of D's stages."""
    if isinstance(discriminator, DCGANDiscriminator):
        stages = [f"downsample.{index}" for index in range(len(discriminator.downsample))]
    elif isinstance(discriminator, ResNetDiscriminator):
        stages = [f"blocks.{index}" for index in range(len(discriminator.blocks))]
    elif isinstance(discriminator, ToyDiscriminator):
        stages = [
            f"net.{name}"
            for name, module in discriminator.net.named_children()
            if isinstance(module, nn.LeakyReLU)
        ]
    else:
        raise ValueError(
            f"NICE has no default layers for {type(discriminator).__name__}; pass `module_names` (names from "
            "`named_modules()`, e.g. the outputs of its later blocks)."
        )
    return stages[len(stages) // 2 :]


@dataclass
class NICEConfig:
    """NICE's options (flags `--nice` and `--nice_<field>`), checked before anything is built."""

    enabled: bool = field(
        default=False,
        metadata={
            "flag": "nice",
            "help": "NICE: multiply D's later features by N(1, beta²) noise in the discriminator phase, "
            "with an adaptive beta and a consistency loss between two noisy passes.",
        },
    )
    target: float = field(default=0.6, metadata={"help": "beta rises while E[sign(D(real))] exceeds this."})
    beta_max: float = field(default=1.0, metadata={"help": "Largest beta."})
    ada_kimg: float = field(
        default=100.0, metadata={"help": "Thousands of real samples for beta to cross [0, max]."}
    )
    interval: int = field(default=4, metadata={"help": "Discriminator steps between two beta adjustments."})
    consistency_weight: float = field(default=1.0, metadata={"help": "Weight of the consistency loss."})

    def check(self) -> None:
        NICERegularizer.check_settings(
            self.target, self.beta_max, self.ada_kimg, self.interval, self.consistency_weight
        )

    def build(
        self, discriminator: nn.Module, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> "NICERegularizer | None":
        """NICE's hooks on the bare `discriminator` (its default layers); None when switched off."""
        if not self.enabled:
            return None
        return NICERegularizer(
            discriminator,
            target=self.target,
            beta_max=self.beta_max,
            ada_kimg=self.ada_kimg,
            interval=self.interval,
            consistency_weight=self.consistency_weight,
            all_reduce=all_reduce,
        )


class NICERegularizer:
    """Multiplicative feature noise with an adaptive beta, and the consistency loss between two noisy passes.

    Args:
        discriminator: the bare model (unwrapped from DDP/accelerate); hooks go on its submodules and stay
            until `remove()`. They act only inside `with nice.noise():`.
        module_names: submodules to modulate (default: `default_noise_modules`).
        target: the value of E[sign(D(real))] above which beta rises.
        beta_max: the largest beta.
        ada_kimg: thousands of real images for beta to cross [0, beta_max].
        interval: discriminator steps between two adjustments of beta.
        consistency_weight: the weight of the consistency loss (0 = noise only).
        beta: the initial beta.
        all_reduce: sums a tensor over processes (e.g. `accelerator.reduce(t, "sum")`), so every process
            adapts beta alike.
    """

    def __init__(
        self,
        discriminator: nn.Module,
        module_names: Sequence[str] | None = None,
        target: float = 0.6,
        beta_max: float = 1.0,
        ada_kimg: float = 100.0,
        interval: int = 4,
        consistency_weight: float = 1.0,
        beta: float = 0.0,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.check_settings(target, beta_max, ada_kimg, interval, consistency_weight, beta)
        names = list(module_names) if module_names is not None else default_noise_modules(discriminator)
        modules = dict(discriminator.named_modules())
        unknown = [name for name in names if name not in modules or name == ""]
        if unknown or not names:
            raise ValueError(
                f"NICE needs one or more submodule names of {type(discriminator).__name__}, got {names} "
                f"(unknown: {unknown}). Choose from {[name for name in modules if name]}."
            )
        self.module_names = names
        self.target, self.beta_max, self.ada_kimg = target, beta_max, ada_kimg
        self.interval, self.consistency_weight = interval, consistency_weight
        self.beta = beta
        self.all_reduce = all_reduce
        self._sign_sum, self._count, self._minibatches = 0.0, 0.0, 0
        self._active = False
        self._handles = [modules[name].register_forward_hook(self._modulate) for name in names]

    @staticmethod
    def check_settings(
        target: float,
        beta_max: float,
        ada_kimg: float,
        interval: int,
        consistency_weight: float,
        beta: float = 0.0,
    ) -> None:
        """Refuse settings NICE cannot use (also callable before the discriminator exists)."""
        if not -1 < target < 1:
            raise ValueError(
                f"NICE target must lie in (-1, 1): r is a mean of signs; got {target} (--nice_target)."
            )
        if beta_max <= 0:
            raise ValueError(f"NICE beta_max must be > 0, got {beta_max} (--nice_beta_max).")
        if not 0 <= beta <= beta_max:
            raise ValueError(f"NICE beta must lie in [0, beta_max={beta_max}], got {beta}.")
        if ada_kimg <= 0:
            raise ValueError(f"NICE ada_kimg must be > 0, got {ada_kimg} (--nice_ada_kimg).")
        if interval < 1:
            raise ValueError(f"NICE interval must be >= 1, got {interval} (--nice_interval).")
        if consistency_weight < 0:
            raise ValueError(
                f"NICE consistency_weight must be >= 0, got {consistency_weight} (--nice_consistency_weight)."
            )

    def _modulate(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not self._active or self.beta == 0:
            return None  # keep the output
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"NICE can only modulate tensor outputs; {type(module).__name__} returned {type(output)}."
            )
        return output * (1 + self.beta * torch.randn_like(output))

    @contextmanager
    def noise(self) -> Iterator[None]:
        """Modulate the chosen features in the forward passes inside this block."""
        self._active = True
        try:
            yield
        finally:
            self._active = False

    def remove(self) -> None:
        """Remove the hooks: the discriminator is then exactly what it was before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def consistency_loss(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """weight · E||first − second||² for two noisy passes of D on the same input (mean over the batch)."""
        difference = (first.float() - second.float()).reshape(first.shape[0], -1)
        return self.consistency_weight * difference.pow(2).sum(1).mean()

    def update(self, real_logits: torch.Tensor) -> dict[str, float]:
        """Accumulate sign(D(real)); every `interval` calls, adapt beta. Returns values to log."""
        self._sign_sum += real_logits.detach().float().sign().sum().item()
        self._count += real_logits.numel()
        self._minibatches += 1
        if self._minibatches % self.interval:
            return {"nice_beta": self.beta}
        stats = torch.tensor([self._sign_sum, self._count], device=real_logits.device, dtype=torch.float64)
        if self.all_reduce is not None:
            stats = self.all_reduce(stats)
        sign_sum, count = stats.tolist()
        self._sign_sum, self._count, self._minibatches = 0.0, 0.0, 0
        r = sign_sum / count
        self.adjust(r, count)
        return {"nice_beta": self.beta, "nice_r": r}

    def adjust(self, r: float, num_samples: float) -> None:
        """One step of the rule: more noise when D is too sure of real data (r > target), less otherwise."""
        direction = (r > self.target) - (r < self.target)
        step = self.beta_max * num_samples / (self.ada_kimg * 1000)
        self.beta = min(self.beta_max, max(0.0, self.beta + direction * step))

    def state_dict(self) -> dict:
        return {
            "beta": self.beta,
            "sign_sum": self._sign_sum,
            "count": self._count,
            "minibatches": self._minibatches,
        }

    def load_state_dict(self, state: dict) -> None:
        if not 0 <= state["beta"] <= self.beta_max:
            raise ValueError(
                f"The saved NICE beta={state['beta']} exceeds beta_max={self.beta_max}; resume with the "
                "run's --nice_beta_max."
            )
        self.beta = state["beta"]
        self._sign_sum, self._count, self._minibatches = (
            state["sign_sum"],
            state["count"],
            state["minibatches"],
        )
