"""Adversarial losses and the R1 penalty as small composable pieces, assembled by `GANLoss`.

In the spirit of StyleGAN2-ADA's `loss.py`: training alternates explicit phases — the generator phase
(adversarial term + lazy SMaRt) and the discriminator phase (adversarial term + lazy R1) — and each
regularizer decides from the step count whether it runs.
"""

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from smart_hf.fake_score import DistributionMatching
from smart_hf.nats import NATSRefiner
from smart_hf.nice import NICERegularizer
from smart_hf.smart import SmartRegularizer

ADVERSARIAL_LOSSES = ("non_saturating", "hinge", "lsgan")


def _check_kind(kind: str) -> None:
    if kind not in ADVERSARIAL_LOSSES:
        raise ValueError(f"Unknown adversarial loss {kind!r}; choose one of {ADVERSARIAL_LOSSES}.")


def generator_adversarial_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side: non-saturating softplus(−D(G(z))), hinge −D(G(z)), or LSGAN ½(D(G(z)) − 1)²."""
    _check_kind(kind)
    fake_logits = fake_logits.float()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    return 0.5 * (fake_logits - 1).pow(2).mean()


def discriminator_adversarial_loss(
    kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor:
    """Discriminator side of the same three losses (LSGAN with targets 1 for real and 0 for fake)."""
    _check_kind(kind)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "non_saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return 0.5 * (real_logits - 1).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """E ||∇_x D(x)||² on real data (Mescheder et al., 2018). `real_inputs` must require grad."""
    (gradients,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return gradients.float().pow(2).reshape(gradients.shape[0], -1).sum(1).mean()


class DiscriminatorAugmentation(Protocol):
    """A transform of D's inputs, applied to real and fake alike (differentiably, so G trains through it).

    `__call__` returns the transformed batch and extra keyword arguments for D (e.g. Diffusion-GAN's
    `timesteps`). In the discriminator phase it is called on the real batch, then on the fake batch, and then
    `update` receives the logits of both, so the transform can adapt; `update` returns values to log.
    """

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]: ...

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]: ...


@dataclass
class LossTerms:
    """The total to backpropagate and the detached terms to log."""

    total: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class GANLoss:
    """Adversarial loss + lazy R1 for D, adversarial loss + lazy SMaRt for G.

    `generator(latents, class_labels)` and `discriminator(x, class_labels)` are called with class labels only
    when they are given. R1 is lazily applied every `r1_interval` discriminator steps and then multiplied by
    the interval (StyleGAN2), so gamma means the same whatever the interval.

    `augmentations` transform D's inputs in both phases, in order (e.g. MaskedGAN's masks, Diffusion-GAN's
    diffusion); R1 is still taken with respect to the clean real input.

    `nice` modulates D's features with noise in the discriminator phase and adds its consistency loss, both
    noisy passes seeing the same augmented input. `nats` refines the fakes D is trained on and adds the
    generator's regression onto its refined samples (`smart_hf.nats`).

    `distribution_matching` adds the DMD2-style term against a learned score of the generator's samples to the
    generator phase; that score model trains in its own phase, `fake_score_phase` (`smart_hf.fake_score`).
    """

    def __init__(
        self,
        generator: Callable[..., torch.Tensor],
        discriminator: Callable[..., torch.Tensor],
        adversarial_loss: str = "non_saturating",
        r1_gamma: float = 0.0,
        r1_interval: int = 16,
        smart: SmartRegularizer | None = None,
        augmentations: Sequence[DiscriminatorAugmentation] = (),
        nice: NICERegularizer | None = None,
        nats: NATSRefiner | None = None,
        distribution_matching: DistributionMatching | None = None,
    ):
        _check_kind(adversarial_loss)
        if r1_gamma < 0:
            raise ValueError(f"r1_gamma must be >= 0, got {r1_gamma}.")
        if r1_interval < 1:
            raise ValueError(f"r1_interval must be >= 1, got {r1_interval}.")
        self.generator, self.discriminator = generator, discriminator
        self.adversarial_loss = adversarial_loss
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval
        self.smart = smart
        self.augmentations = list(augmentations)
        self.nice, self.nats = nice, nats
        self.distribution_matching = distribution_matching

    def _run_generator(self, latents: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        return self.generator(latents) if class_labels is None else self.generator(latents, class_labels)

    def _augment(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """D's input after the augmentations, and the keyword arguments they give D."""
        kwargs: dict[str, Any] = {}
        for augmentation in self.augmentations:
            x, extra = augmentation(x)
            kwargs.update(extra)
        return x, kwargs

    def _discriminate(
        self, x: torch.Tensor, kwargs: dict[str, Any], class_labels: torch.Tensor | None
    ) -> torch.Tensor:
        inputs = (x,) if class_labels is None else (x, class_labels)
        return self.discriminator(*inputs, **kwargs)

    def _run_discriminator(self, x: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """D on `x` after the input augmentations."""
        return self._discriminate(*self._augment(x), class_labels)

    def generator_phase(
        self, latents: torch.Tensor, step: int, class_labels: torch.Tensor | None = None
    ) -> LossTerms:
        fake = self._run_generator(latents, class_labels)
        fake_logits = self._run_discriminator(fake, class_labels)
        adversarial = generator_adversarial_loss(self.adversarial_loss, fake_logits)
        logs = {"loss_G": adversarial.item()}
        total = adversarial
        if self.smart is not None and self.smart.is_active(step):
            sample_weights = self.smart.sample_weights(fake_logits)
            smart = self.smart(fake, step, class_labels, sample_weights=sample_weights)
            total = total + smart.loss
            logs["loss_smart"] = smart.score_matching_loss.item()
            logs["smart_weight"] = self.smart.weight_at(step)
        matching = self.distribution_matching
        if matching is not None and matching.is_active(step):
            term = matching(fake, step, class_labels)
            total = total + term.loss
            logs["fake_score_gradient_norm"] = term.gradient_norm.item()
            logs["fake_score_weight"] = matching.weight_at(step)
        if self.nats is not None and self.nats.is_active(step):
            refined = self.nats.refine(lambda x: self._run_discriminator(x, class_labels), fake, step)
            regression = self.nats.regression_loss(fake, refined)
            total = total + regression
            logs["loss_nats"] = regression.item()
            logs["nats_weight"] = self.nats.weight_at(step)
        return LossTerms(total, logs)

    def fake_score_phase(self, latents: torch.Tensor, class_labels: torch.Tensor | None = None) -> LossTerms:
        """The fake score model's denoising loss on fresh generated samples (G gets no gradient)."""
        if self.distribution_matching is None:
            raise ValueError("fake_score_phase needs a GANLoss built with distribution_matching.")
        with torch.no_grad():
            fake = self._run_generator(latents, class_labels)
        loss = self.distribution_matching.fake_score_loss(fake, class_labels)
        return LossTerms(loss, {"loss_fake_score": loss.item()})

    def discriminator_phase(
        self,
        real: torch.Tensor,
        latents: torch.Tensor,
        step: int,
        class_labels: torch.Tensor | None = None,
        generator_step: int | None = None,
    ) -> LossTerms:
        """`step` counts discriminator steps (lazy R1); `generator_step` (default: `step`) sets NATS's
        annealed weight, which is scheduled in generator steps."""
        with torch.no_grad():
            fake = self._run_generator(latents, class_labels)
        nats_step = step if generator_step is None else generator_step
        if self.nats is not None and self.nats.is_active(nats_step):
            fake = self.nats.refine(lambda x: self._run_discriminator(x, class_labels), fake, nats_step)
        apply_r1 = self.r1_gamma > 0 and step % self.r1_interval == 0
        real = real.detach().requires_grad_(apply_r1)
        nice = self.nice
        with nice.noise() if nice is not None else nullcontext():
            real_inputs = self._augment(real)
            real_logits = self._discriminate(*real_inputs, class_labels)
            fake_inputs = self._augment(fake)
            fake_logits = self._discriminate(*fake_inputs, class_labels)
            # Both noisy passes see the same augmented input; with beta = 0 they coincide (skipped).
            consistency = None
            if nice is not None and nice.beta > 0:
                consistency = nice.consistency_loss(
                    real_logits, self._discriminate(*real_inputs, class_labels)
                ) + nice.consistency_loss(fake_logits, self._discriminate(*fake_inputs, class_labels))
        adversarial = discriminator_adversarial_loss(self.adversarial_loss, real_logits, fake_logits)
        logs = {"loss_D": adversarial.item(), "D_real_sign": real_logits.detach().sign().mean().item()}
        for augmentation in self.augmentations:
            logs.update(augmentation.update(real_logits.detach(), fake_logits.detach()))
        total = adversarial
        if nice is not None:
            if consistency is not None:
                total = total + consistency
                logs["loss_nice_consistency"] = consistency.item()
            logs.update(nice.update(real_logits.detach()))
        if apply_r1:
            penalty = r1_penalty(real_logits, real)
            total = total + 0.5 * self.r1_gamma * self.r1_interval * penalty
            logs["r1_penalty"] = penalty.item()
        return LossTerms(total, logs)
