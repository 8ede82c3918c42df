"""BatchNorm statistics of a generator: recomputed for its present weights, and frozen for the rest of a run.

A BatchNorm generator trains on each batch's statistics but samples with running ones; these helpers make the
two agree (SWA's `update_bn`), for an EMA copy of the weights or from a chosen step on
(--freeze_batch_norm_step).
"""

import torch
from diffusers.models.modeling_utils import ModelMixin
from torch.optim.swa_utils import update_bn

RECALIBRATION_BATCHES = 50


class _KeywordForward(torch.nn.Module):
    """Calls the wrapped model with a batch of keyword arguments, as `update_bn` passes one input only."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**inputs)


def recalibrate_batch_norm(
    generator: ModelMixin, batch_size: int, seed: int, num_batches: int = RECALIBRATION_BATCHES
) -> None:
    """Recompute the BatchNorm running statistics of `generator` for its present weights (torch's `update_bn`,
    as for SWA): the average over `num_batches` training-size batches of latents, with uniform class labels
    for a class-conditional generator. Its own random generator leaves the training's random state alone."""
    rng = torch.Generator().manual_seed(seed)
    num_classes = generator.config.get("num_classes")
    batches = []
    for _ in range(num_batches):
        inputs = {"latents": torch.randn(batch_size, generator.config.latent_dim, generator=rng)}
        if num_classes:
            inputs["class_labels"] = torch.randint(num_classes, (batch_size,), generator=rng)
        batches.append({name: tensor.to(generator.device) for name, tensor in inputs.items()})
    update_bn(batches, _KeywordForward(generator))


def freeze_batch_norm(generator: ModelMixin, batch_size: int, seed: int, recalibrate: bool) -> None:
    """Put the generator's BatchNorm layers in eval mode for the rest of training, with statistics recomputed
    for its present weights (`recalibrate`; a resumed run keeps those of its checkpoint)."""
    if recalibrate:
        recalibrate_batch_norm(generator, batch_size, seed)
    for module in generator.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
