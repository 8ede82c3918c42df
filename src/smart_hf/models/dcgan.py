"""DCGAN-style image generator and discriminator (Radford et al., 2016), with the usual modern additions:
spectral norm in D (Miyato et al., 2018), a projection discriminator for classes (Miyato & Koyama, 2018)
and an optional timestep input for Diffusion-GAN.

Self-contained (only torch, diffusers and the standard library) so the file can travel to the Hub beside its
weights; the helpers it shares with the other model file are therefore copies of each other.
"""

import contextlib
from collections.abc import Iterator

import torch
import torch.utils.checkpoint
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def checkpointed(module: nn.Module, *inputs: torch.Tensor | None) -> torch.Tensor:
    """`module(*inputs)` with its activations recomputed in the backward pass instead of kept (gradient
    checkpointing). The recomputation changes no state: BatchNorm normalises by the same batch statistics
    without updating its running ones a second time, and spectral norm reuses the singular vectors of the
    first pass, so weights, buffers and gradients are those of a plain pass."""
    return torch.utils.checkpoint.checkpoint(
        module,
        *inputs,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _state_preserving_recomputation(module)),
    )


def _checkpointing_on(model: ModelMixin) -> bool:
    """Whether `model.enable_gradient_checkpointing()` is on and this pass builds a graph."""
    return model.gradient_checkpointing and torch.is_grad_enabled()


@contextlib.contextmanager
def _state_preserving_recomputation(module: nn.Module) -> Iterator[None]:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms
    ]
    power_iterations = [m for m in module.modules() if type(m).__name__ == "_SpectralNorm" and m.training]
    for norm in norms:
        norm.momentum = 0.0
    for parametrization in power_iterations:
        parametrization.training = False
    try:
        yield
    finally:
        for norm, (momentum, count) in zip(norms, saved, strict=True):
            norm.momentum = momentum
            if count is not None:
                norm.num_batches_tracked.copy_(count)
        for parametrization in power_iterations:
            parametrization.training = True


def _stage_channels(resolution: int, base_channels: int, max_channel_multiplier: int) -> dict[int, int]:
    """Channels at each resolution 4, 8, ..., `resolution`: `base_channels` at the image size, doubling each
    time the resolution halves, capped at `max_channel_multiplier` · `base_channels`."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"`resolution` must be a power of two >= 8, got {resolution}.")
    if base_channels < 1 or max_channel_multiplier < 1:
        raise ValueError("`base_channels` and `max_channel_multiplier` must be >= 1.")
    channels, size = {}, 4
    while size <= resolution:
        channels[size] = base_channels * min(max_channel_multiplier, max(1, resolution // (2 * size)))
        size *= 2
    return channels


def _check_image_channels(channels: int, name: str) -> None:
    if channels not in (1, 3):
        raise ValueError(f"`{name}` must be 1 (grayscale) or 3 (RGB), got {channels}.")


def _check_class_labels(
    model: str, class_labels: torch.Tensor | None, num_classes: int, batch_size: int
) -> None:
    if not num_classes:
        if class_labels is not None:
            raise ValueError(
                f"{model} is unconditional (num_classes={num_classes}); do not pass class_labels."
            )
        return
    if class_labels is None:
        raise ValueError(f"{model} is class-conditional ({num_classes} classes); pass class_labels.")
    if class_labels.shape != (batch_size,) or class_labels.is_floating_point():
        raise ValueError(
            f"{model} expects integer class_labels of shape ({batch_size},), got {class_labels.dtype} "
            f"of shape {tuple(class_labels.shape)}."
        )


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(ModelMixin, ConfigMixin):
    """Latent (+ class) → image in [−1, 1]: a linear layer to a 4×4 map, then stride-2 transposed convolutions
    with BatchNorm and ReLU up to `resolution`, a 3×3 convolution to `out_channels` and tanh.

    A class-conditional generator (`num_classes` > 0) concatenates a learned class embedding to the latent.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 128,
        out_channels: int = 3,
        resolution: int = 32,
        num_classes: int | None = None,
        base_channels: int = 64,
        max_channel_multiplier: int = 8,
    ):
        super().__init__()
        self.gradient_checkpointing = False
        _check_image_channels(out_channels, "out_channels")
        channels = _stage_channels(resolution, base_channels, max_channel_multiplier)
        self.class_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        input_dim = 2 * latent_dim if num_classes else latent_dim
        self.project = nn.Linear(input_dim, channels[4] * 16, bias=False)
        self.project_norm = nn.BatchNorm2d(channels[4])
        self.upsample = nn.Sequential(
            *(
                nn.Sequential(
                    nn.ConvTranspose2d(
                        channels[size], channels[2 * size], 4, stride=2, padding=1, bias=False
                    ),
                    nn.BatchNorm2d(channels[2 * size]),
                    nn.ReLU(),
                )
                for size in list(channels)[:-1]
            )
        )
        self.to_image = nn.Conv2d(channels[resolution], out_channels, 3, padding=1)
        self.apply(_dcgan_init)

    def forward(self, latents: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if latents.ndim != 2 or latents.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"latents must have shape (batch_size, {self.config.latent_dim}), got {tuple(latents.shape)}."
            )
        _check_class_labels(type(self).__name__, class_labels, self.config.num_classes, latents.shape[0])
        if self.class_embedding is not None:
            latents = torch.cat([latents, self.class_embedding(class_labels).to(latents.dtype)], dim=1)
        h = torch.relu(self.project_norm(self.project(latents).reshape(latents.shape[0], -1, 4, 4)))
        for stage in self.upsample:
            h = checkpointed(stage, h) if _checkpointing_on(self) else stage(h)
        return torch.tanh(self.to_image(h))


class DCGANDiscriminator(ModelMixin, ConfigMixin):
    """Image (+ class, + timestep) → one real/fake logit: spectrally normalised stride-2 convolutions with
    LeakyReLU down to 4×4, then a 4×4 convolution to a feature vector phi.

    logit = w·phi + embed_class(y)·phi + embed_timestep(t)·phi (projection discriminator). The timestep
    term exists when `num_timesteps` > 0 (Diffusion-GAN's noisy inputs) and is skipped without timesteps.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        resolution: int = 32,
        num_classes: int | None = None,
        num_timesteps: int = 0,
        base_channels: int = 64,
        max_channel_multiplier: int = 8,
    ):
        super().__init__()
        self.gradient_checkpointing = False
        _check_image_channels(in_channels, "in_channels")
        if num_timesteps < 0:
            raise ValueError(f"`num_timesteps` must be >= 0 (0 = no timestep input), got {num_timesteps}.")
        channels = _stage_channels(resolution, base_channels, max_channel_multiplier)
        sizes = sorted(channels, reverse=True)
        self.from_image = spectral_norm(nn.Conv2d(in_channels, channels[resolution], 3, padding=1))
        self.downsample = nn.ModuleList(
            spectral_norm(nn.Conv2d(channels[size], channels[size // 2], 4, stride=2, padding=1))
            for size in sizes[:-1]
        )
        feature_dim = channels[4]
        self.to_features = spectral_norm(nn.Conv2d(feature_dim, feature_dim, 4))
        self.to_logit = spectral_norm(nn.Linear(feature_dim, 1))
        self.class_embedding = spectral_norm(nn.Embedding(num_classes, feature_dim)) if num_classes else None
        self.timestep_embedding = (
            spectral_norm(nn.Embedding(num_timesteps, feature_dim)) if num_timesteps else None
        )
        self.activation = nn.LeakyReLU(0.2)

    def forward(
        self,
        images: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timesteps: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        config = self.config
        if images.ndim != 4 or tuple(images.shape[1:]) != (
            config.in_channels,
            config.resolution,
            config.resolution,
        ):
            raise ValueError(
                f"images must have shape (batch_size, {config.in_channels}, {config.resolution}, "
                f"{config.resolution}), got {tuple(images.shape)}."
            )
        batch_size = images.shape[0]
        _check_class_labels(type(self).__name__, class_labels, config.num_classes, batch_size)
        h = self.activation(self.from_image(images))
        for layer in self.downsample:
            h = self.activation(checkpointed(layer, h) if _checkpointing_on(self) else layer(h))
        features = self.activation(self.to_features(h)).flatten(1)
        logits = self.to_logit(features).squeeze(1)
        if self.class_embedding is not None:
            logits = logits + (self.class_embedding(class_labels) * features).sum(1)
        if timesteps is not None:
            logits = logits + (
                self.timestep_embedding(self._timestep_tensor(timesteps, images)) * features
            ).sum(1)
        return logits

    def _timestep_tensor(self, timesteps: torch.Tensor | int, images: torch.Tensor) -> torch.Tensor:
        if self.timestep_embedding is None:
            raise ValueError(
                f"{type(self).__name__} was built without a timestep input (num_timesteps=0); "
                "set num_timesteps > 0 to pass timesteps."
            )
        timesteps = torch.as_tensor(timesteps, device=images.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(images.shape[0])
        if timesteps.shape != images.shape[:1] or timesteps.is_floating_point():
            raise ValueError(
                f"timesteps must be an integer or integer tensor of shape ({images.shape[0]},), "
                f"got {timesteps.dtype} of shape {tuple(timesteps.shape)}."
            )
        return timesteps
