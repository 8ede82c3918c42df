"""Score functions: frozen noise predictors eps_hat(x_t, t, c) on a variance-preserving (VP) schedule.

Every score function answers one question, "what noise was added to get x_t at step t?", and carries the
schedule alphā_t it was trained on, so x_t = sqrt(alphā_t)·x0 + sqrt(1 − alphā_t)·eps and
score(x_t) = −eps_hat / sqrt(1 − alphā_t).
"""

import json
import os
from collections.abc import Sequence

import torch
from diffusers import DDPMScheduler
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id
from torch import nn


def default_alphas_cumprod(num_train_timesteps: int = 1000) -> torch.Tensor:
    """alphā_t of the DDPM linear schedule (beta 1e-4 → 2e-2), the schedule of `google/ddpm-cifar10-32`."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_schedule="linear"
    ).alphas_cumprod.clone()


class ScoreFunction(nn.Module):
    """Interface of a frozen noise predictor.

    Subclasses implement `predict_noise`. `sample_shape` is the shape of one clean sample the score was
    trained on (e.g. `(2,)` or `(3, 32, 32)`); `num_classes` is `None` for unconditional scores.
    """

    def __init__(
        self, alphas_cumprod: torch.Tensor, sample_shape: Sequence[int], num_classes: int | None = None
    ):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().float().clone(), persistent=False)
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def signal_and_noise_scales(
        self, timesteps: torch.Tensor, ndim: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) = (sqrt(alphā_t), sqrt(1 − alphā_t)), shaped to broadcast against an `ndim` batch."""
        alpha_bar = self.alphas_cumprod.to(timesteps.device)[timesteps].reshape(-1, *([1] * (ndim - 1)))
        return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a_t, s_t = self.signal_and_noise_scales(timesteps, x0.ndim)
        return a_t.to(x0.dtype) * x0 + s_t.to(x0.dtype) * noise

    def check_compatible(self, sample_shape: Sequence[int], num_classes: int | None = None) -> None:
        """Raise a `ValueError` that says what to change when a generator cannot be scored by this function.

        `num_classes` is the generator's (`None` or 0: unconditional). A conditional score needs a generator
        with the same classes; an unconditional score serves any generator (its labels are just not passed).
        """
        sample_shape = tuple(sample_shape)
        if sample_shape != self.sample_shape:
            if len(sample_shape) == 3 and len(self.sample_shape) == 3:
                raise ValueError(_image_mismatch_message(sample_shape, self.sample_shape))
            raise ValueError(
                f"The generator makes samples of shape {sample_shape} but the score model expects "
                f"{self.sample_shape}. Configure the generator to output {self.sample_shape} (channels, "
                f"resolution), or use a score model trained on {sample_shape} data."
            )
        if self.num_classes and not num_classes:
            raise ValueError(
                f"The score model is class-conditional ({self.num_classes} classes) but the generator is "
                f"unconditional: train a class-conditional generator with the same {self.num_classes} "
                "classes (--class_conditional), or use an unconditional score model."
            )
        if self.num_classes and num_classes != self.num_classes:
            raise ValueError(
                f"The generator has {num_classes} classes but the score model has {self.num_classes}; "
                "they must use the same label set."
            )

    def check_timestep_range(self, t_min: int, t_max: int) -> None:
        if not 0 <= t_min <= t_max < self.num_train_timesteps:
            raise ValueError(
                f"Timestep range [{t_min}, {t_max}] is outside the score model's schedule; "
                f"choose 0 <= t_min <= t_max <= {self.num_train_timesteps - 1}."
            )

    def predict_noise(
        self, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.predict_noise(x_t, timesteps, class_labels)


def _image_mismatch_message(generator_shape: tuple[int, ...], score_shape: tuple[int, ...]) -> str:
    (channels, height, width), (score_channels, score_height, score_width) = generator_shape, score_shape
    fixes = []
    if (height, width) != (score_height, score_width):
        square = score_height == score_width
        fixes.append(
            f"--resolution {score_height}" if square else f"a {score_height}×{score_width} generator"
        )
    if channels != score_channels:
        fixes.append(f"--channels {score_channels}")
    return (
        f"The generator makes {'×'.join(map(str, generator_shape))} images but the score model expects "
        f"{'×'.join(map(str, score_shape))}: pass {' '.join(fixes)}, or use a score model trained at "
        f"{height}×{width} {_describe_channels(channels)}."
    )


def _describe_channels(channels: int) -> str:
    return {1: "grayscale", 3: "RGB"}.get(channels, f"{channels}-channel")


class GaussianMixtureScore(ScoreFunction):
    """The exact noise prediction of an isotropic Gaussian mixture diffused under a VP schedule.

    Diffusing sum_k w_k N(mu_k, std²·I) to step t gives sum_k w_k N(a_t·mu_k, (a_t²·std² + s_t²)·I), whose
    score is a responsibility-weighted sum of the components' scores; eps_hat = −s_t·score is therefore exact.
    """

    def __init__(
        self,
        means: torch.Tensor,
        std: float,
        weights: torch.Tensor | None = None,
        alphas_cumprod: torch.Tensor | None = None,
    ):
        means = torch.as_tensor(means, dtype=torch.float32)
        if means.ndim != 2:
            raise ValueError(f"`means` must have shape (num_components, dim), got {tuple(means.shape)}.")
        if std < 0:
            raise ValueError(f"`std` must be >= 0, got {std}.")
        super().__init__(
            default_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod,
            sample_shape=(means.shape[1],),
        )
        weights = (
            torch.full((means.shape[0],), 1.0 / means.shape[0])
            if weights is None
            else torch.as_tensor(weights)
        )
        self.register_buffer("means", means)
        self.register_buffer("log_weights", torch.log(weights.float() / weights.sum()))
        self.std = float(std)

    def predict_noise(
        self, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        a_t, s_t = self.signal_and_noise_scales(timesteps, 2)  # (B, 1) each
        variance = a_t**2 * self.std**2 + s_t**2  # (B, 1)
        offsets = x_t[:, None, :] - a_t[:, :, None] * self.means[None]  # (B, K, D)
        log_resp = self.log_weights[None] - offsets.pow(2).sum(-1) / (2 * variance)  # (B, K)
        responsibilities = torch.softmax(log_resp, dim=-1)
        score = -(responsibilities[..., None] * offsets).sum(1) / variance
        return -s_t * score


class ModelScore(ScoreFunction):
    """A diffusers noise-prediction model (`UNet2DModel`, `MLPNoisePredictor`, ...) plus its `DDPMScheduler`.

    The model is frozen: eval mode, no parameter gradients. Gradients still flow through it to its input,
    which is what SMaRt's full form needs. `sample` and `v_prediction` models are converted to eps_hat; a
    model with a learned variance (twice the input channels out) contributes its first half, the noise. A
    class-conditional model (`num_class_embeds`) needs `class_labels`; an unconditional one ignores them.
    Inputs are cast to the model's dtype and the prediction back to the input's.
    """

    def __init__(self, model: nn.Module, scheduler: DDPMScheduler, sample_shape: Sequence[int]):
        config = model.config
        if (
            getattr(config, "class_embed_type", None) is not None
            and getattr(config, "num_class_embeds", None) is None
        ):
            raise ValueError(
                f"Score models conditioned through class_embed_type={config.class_embed_type!r} are not "
                "supported; SMaRt passes integer class labels, so use a UNet with num_class_embeds."
            )
        super().__init__(scheduler.alphas_cumprod, sample_shape, getattr(config, "num_class_embeds", None))
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(
                f"Unsupported prediction_type {self.prediction_type!r}; "
                "use 'epsilon', 'v_prediction' or 'sample'."
            )
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "ModelScore":
        """The wrapped model stays in eval mode whatever the caller asks (no dropout, frozen norms)."""
        super().train(mode)
        self.model.eval()
        return self

    def predict_noise(
        self, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {}
        if self.num_classes is not None:
            if class_labels is None:
                raise ValueError(
                    f"The score model is class-conditional ({self.num_classes} classes); pass class_labels."
                )
            kwargs["class_labels"] = class_labels
        model_dtype = next((p.dtype for p in self.model.parameters()), x_t.dtype)
        output = self.model(x_t.to(model_dtype), timesteps, **kwargs).sample.to(x_t.dtype)
        if output.shape[1] == 2 * x_t.shape[1] and x_t.ndim == 4:  # learned variance: (eps, variance)
            output = output[:, : x_t.shape[1]]
        if self.prediction_type == "epsilon":
            return output
        a_t, s_t = self.signal_and_noise_scales(timesteps, x_t.ndim)
        a_t, s_t = a_t.to(x_t.dtype), s_t.to(x_t.dtype)
        if self.prediction_type == "v_prediction":  # v = a·eps − s·x0  ⇒  eps = a·v + s·x_t
            return a_t * output + s_t * x_t
        return (x_t - a_t * output) / s_t  # output is x0


# The files a score model needs from a Hub repository, in either layout: a `DDPMPipeline` (unet/ + scheduler/)
# or a flat model repository (config.json + scheduler_config.json at the root, like `google/ddpm-cifar10-32`).
HUB_ALLOW_PATTERNS = [
    f"{folder}{name}"
    for folder in ("", "unet/", "score_model/", "scheduler/")
    for name in ("config.json", "scheduler_config.json", "diffusion_pytorch_model*.safetensors*")
]


def _model_class(class_name: str) -> type[nn.Module]:
    import diffusers

    from smart_hf.models import toy_mlp

    model_class = getattr(toy_mlp, class_name, None) or getattr(diffusers, class_name, None)
    if model_class is None:
        raise ValueError(f"Unknown score model class {class_name!r} in config.json.")
    return model_class


def _find_model_subfolder(pretrained_path: str) -> str | None:
    for subfolder in ("unet", "score_model"):
        if os.path.isfile(os.path.join(pretrained_path, subfolder, "config.json")):
            return subfolder
    if os.path.isfile(os.path.join(pretrained_path, "config.json")):
        return None
    raise ValueError(
        f"No score model found in {pretrained_path!r}: expected a DDPMPipeline folder (unet/ and "
        "scheduler/), a folder with score_model/ and scheduler/, or a bare model folder with config.json."
    )


def _load_scheduler(root: str) -> DDPMScheduler:
    """The folder's scheduler (scheduler/ or a root scheduler_config.json), else the DDPM linear default."""
    if os.path.isfile(os.path.join(root, "scheduler", "scheduler_config.json")):
        return DDPMScheduler.from_pretrained(root, subfolder="scheduler")
    if os.path.isfile(os.path.join(root, "scheduler_config.json")):
        return DDPMScheduler.from_pretrained(root)
    return DDPMScheduler()


def _local_or_downloaded(name: str) -> str:
    """The folder `name`, else the Hub repository `name` downloaded. A mistyped path is refused at once rather
    than sent to the Hub to fail after retries, and a model the Hub cannot provide gets a one-line error."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise ValueError(f"Score model {name!r} is a file; pass the folder that holds its config.json.")
    first = name.split("/")[0]
    try:
        validate_repo_id(name)
        looks_like_hub_id = name.count("/") == 1
    except HFValidationError:
        looks_like_hub_id = False
    if not looks_like_hub_id or os.path.isdir(first):  # 'outputs/unet' next to outputs/ is a path too
        local = f", though {first!r} is" if looks_like_hub_id else ""
        raise ValueError(
            f"Score model {name!r} is neither a folder nor a Hub id: no such folder{local} (a Hub id is "
            "owner/name, like 'google/ddpm-cifar10-32')."
        )
    try:
        return snapshot_download(name, allow_patterns=HUB_ALLOW_PATTERNS)
    except RepositoryNotFoundError as error:  # also a gated repository whose terms were not accepted
        raise ValueError(
            f"Score model {name!r}: no such folder, and the Hub has no model you can read under that id "
            "(check it; a private or gated one needs `hf auth login`)."
        ) from error
    except LocalEntryNotFoundError as error:
        fix = "unset HF_HUB_OFFLINE to download it" if constants.HF_HUB_OFFLINE else "check the network"
        raise ConnectionError(
            f"Score model {name!r}: no such folder, and the Hub model is neither cached nor reachable; {fix}."
        ) from error


def load_score_model(
    pretrained_model_name_or_path: str | os.PathLike, torch_dtype: torch.dtype = torch.float32
) -> ModelScore:
    """Load a frozen `ModelScore` from a local folder or a Hub id, in `torch_dtype`.

    The folder (or the Hub repository, of which only configs and safetensors weights are downloaded) is a
    `DDPMPipeline` (unet/ + scheduler/), a toy score (score_model/ + scheduler/) or a bare model folder with
    an optional scheduler_config.json. Without a scheduler config, the DDPM linear schedule (1000 steps) is
    assumed. Only safetensors weights are loaded: pickled .bin files can run arbitrary code.
    """
    root = _local_or_downloaded(str(pretrained_model_name_or_path))
    subfolder = _find_model_subfolder(root)
    model_folder = os.path.join(root, subfolder or "")
    if not any(name.endswith(".safetensors") for name in os.listdir(model_folder)):
        raise ValueError(
            f"The score model {pretrained_model_name_or_path!r} has no safetensors weights; only those are "
            "loaded (pickled .bin files can run code). Re-save it with `save_pretrained`, which writes them."
        )
    with open(os.path.join(model_folder, "config.json")) as f:
        class_name = json.load(f).get("_class_name", "UNet2DModel")
    model = _model_class(class_name).from_pretrained(
        root, subfolder=subfolder, torch_dtype=torch_dtype, use_safetensors=True
    )
    config = model.config
    if hasattr(config, "sample_size"):
        if config.sample_size is None:
            raise ValueError(
                f"The score model {pretrained_model_name_or_path!r} has no sample_size in its config, so the "
                "resolution it was trained at is unknown; set it in config.json."
            )
        size = config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        sample_shape: tuple[int, ...] = (config.in_channels, *size)
        if config.out_channels not in (config.in_channels, 2 * config.in_channels):
            raise ValueError(
                f"The score model maps {config.in_channels} channels to {config.out_channels}; a noise "
                "predictor outputs as many channels as it reads (or twice as many, with a learned variance)."
            )
    else:
        sample_shape = (config.data_dim,)
    return ModelScore(model, _load_scheduler(root), sample_shape)
