"""MLP generator, discriminator and noise-prediction network for low-dimensional (toy 2-D) data.

Self-contained (only torch and diffusers imports) so the file can travel to the Hub beside its weights.
"""

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


def _mlp(
    in_dim: int,
    hidden_dim: int,
    num_layers: int,
    out_dim: int,
    activation: type[nn.Module],
    batch_norm: bool = False,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        norm = [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
        layers += [nn.Linear(dim, hidden_dim), *norm, activation()]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class FourierFeatures(nn.Module):
    """x -> [x, sin(x·B), cos(x·B)] with a fixed random B ~ N(0, scale²) of shape (in_dim, num_features).

    An MLP on raw low-dimensional coordinates learns high-frequency functions slowly (spectral bias; Tancik
    et al., 2020); these features let it draw sharp edges early. B is a buffer: saved with the weights, never
    trained.
    """

    def __init__(self, in_dim: int, num_features: int, scale: float):
        super().__init__()
        if num_features < 1 or scale <= 0:
            raise ValueError(
                f"Fourier features need num_features >= 1 and scale > 0, got {num_features} and {scale}."
            )
        self.register_buffer("projection", torch.randn(in_dim, num_features) * scale)
        self.out_dim = in_dim + 2 * num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = x @ self.projection.to(x.dtype)
        return torch.cat([x, angles.sin(), angles.cos()], dim=-1)


def _input_features(in_dim: int, num_features: int, scale: float) -> tuple[nn.Module, int]:
    """(Fourier features of the input when `scale` > 0, else the identity; their width)."""
    if scale > 0:
        features = FourierFeatures(in_dim, num_features, scale)
        return features, features.out_dim
    return nn.Identity(), in_dim


class ToyGenerator(ModelMixin, ConfigMixin):
    """Maps a standard-normal latent to a point in `data_dim` dimensions.

    `batch_norm` puts BatchNorm after every hidden layer: it lets a generator with a 2-D latent carve sharp
    cells for many separated modes and keep training with Adam beta1 = 0.5, where the plain MLP collapses.
    `fourier_scale` > 0 feeds the MLP `fourier_features` random Fourier features of the latent besides it.
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 8,
        data_dim: int = 2,
        hidden_dim: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        fourier_features: int = 64,
        fourier_scale: float = 0.0,
    ):
        super().__init__()
        self.input_features, in_dim = _input_features(latent_dim, fourier_features, fourier_scale)
        self.net = _mlp(in_dim, hidden_dim, num_layers, data_dim, nn.ReLU, batch_norm)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(self.input_features(latents))


class ToyDiscriminator(ModelMixin, ConfigMixin):
    """Returns one real/fake logit per point (+ timestep, for Diffusion-GAN's noisy inputs).

    With `num_timesteps` > 0, logit = w·phi + embed_timestep(t)·phi, phi the last hidden features (a
    projection term, as in the image discriminators); the embedding starts at zero, so t is learned from a
    discriminator that ignores it. Without timesteps the term is skipped. `fourier_scale` > 0 feeds the MLP
    `fourier_features` random Fourier features of the point besides it.
    """

    @register_to_config
    def __init__(
        self,
        data_dim: int = 2,
        hidden_dim: int = 256,
        num_layers: int = 3,
        num_timesteps: int = 0,
        fourier_features: int = 64,
        fourier_scale: float = 0.0,
    ):
        super().__init__()
        if num_timesteps < 0:
            raise ValueError(f"`num_timesteps` must be >= 0 (0 = no timestep input), got {num_timesteps}.")
        self.input_features, in_dim = _input_features(data_dim, fourier_features, fourier_scale)
        self.net = _mlp(in_dim, hidden_dim, num_layers, 1, lambda: nn.LeakyReLU(0.2))
        self.timestep_embedding = None
        if num_timesteps:
            self.timestep_embedding = nn.Embedding(num_timesteps, self.net[-1].in_features)
            nn.init.zeros_(self.timestep_embedding.weight)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | int | None = None) -> torch.Tensor:
        if timesteps is None:
            return self.net(self.input_features(x)).squeeze(-1)
        if self.timestep_embedding is None:
            raise ValueError(
                "ToyDiscriminator was built without a timestep input (num_timesteps=0); "
                "set num_timesteps > 0 to pass timesteps."
            )
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        if timesteps.shape != x.shape[:1] or timesteps.is_floating_point():
            raise ValueError(
                f"timesteps must be an integer or integer tensor of shape ({x.shape[0]},), "
                f"got {timesteps.dtype} of shape {tuple(timesteps.shape)}."
            )
        features = self.net[:-1](self.input_features(x))
        return self.net[-1](features).squeeze(-1) + (self.timestep_embedding(timesteps) * features).sum(-1)


@dataclass
class NoisePredictionOutput(BaseOutput):
    """Predicted noise, named like `UNet2DOutput` so callers treat both models alike."""

    sample: torch.Tensor


class MLPNoisePredictor(ModelMixin, ConfigMixin):
    """eps_hat(x_t, t): an MLP on the noisy point and a sinusoidal embedding of the integer timestep."""

    @register_to_config
    def __init__(
        self, data_dim: int = 2, hidden_dim: int = 256, num_layers: int = 4, time_embed_dim: int = 64
    ):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, hidden_dim), nn.SiLU())
        self.input_proj = nn.Linear(data_dim, hidden_dim)
        self.blocks = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers))
        self.output_proj = nn.Linear(hidden_dim, data_dim)

    def _embed_timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.config.time_embed_dim // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=timesteps.device) / half)
        angles = timesteps.float()[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, return_dict: bool = True
    ) -> NoisePredictionOutput | tuple[torch.Tensor]:
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        time_features = self.time_mlp(self._embed_timesteps(timesteps).to(sample.dtype))
        h = self.input_proj(sample)
        for block in self.blocks:
            h = h + block(nn.functional.silu(h + time_features))
        eps = self.output_proj(nn.functional.silu(h))
        return NoisePredictionOutput(sample=eps) if return_dict else (eps,)
