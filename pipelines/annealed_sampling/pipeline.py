"""Score models sampled with annealed Langevin (ALS) or consistent annealed sampling (CAS).

`annealed_sample` runs a scheduler of `smart_hf.schedulers` with any noise predictor: a smart_hf
`ScoreFunction` (e.g. the toy 2-D scores) or a network call. `AnnealedSamplingPipeline` does it for an
unconditional `UNet2DModel`, like `DDPMPipeline`:

    from smart_hf.pipelines import AnnealedSamplingPipeline
    from smart_hf.schedulers import ConsistentAnnealedSamplingScheduler

    folder = "src/smart_hf/assets/score_models/digits-unet"  # a DDPMPipeline of an epsilon-prediction UNet
    scheduler = ConsistentAnnealedSamplingScheduler.from_pretrained(
        folder, subfolder="scheduler", sigma_max=10.0, use_eds=True
    )
    pipeline = AnnealedSamplingPipeline.from_pretrained(folder, scheduler=scheduler)
    images = pipeline(batch_size=16, num_inference_steps=250).images

Unlike `smart_one_step`, this pipeline imports smart_hf: its scheduler component is one of smart_hf's
schedulers, which a folder saved with it names and loads from smart_hf, so it never runs without smart_hf and
is not exported as Hub remote code (copying the schedulers here would keep two sources of one class).
"""

from collections.abc import Callable, Iterable, Sequence

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from smart_hf.schedulers import AnnealedScoreScheduler
from smart_hf.scores import ScoreFunction

OUTPUT_TYPES = ("pil", "np", "pt")
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_scheduler(scheduler: object) -> None:
    if not isinstance(scheduler, AnnealedScoreScheduler):
        raise ValueError(
            "Annealed sampling needs an AnnealedLangevinScheduler or a ConsistentAnnealedSamplingScheduler, "
            f"got {type(scheduler).__name__}; build one from the model's DDPM scheduler with "
            "`ConsistentAnnealedSamplingScheduler.from_config(ddpm_scheduler.config)`."
        )


def _check_score_function(score: ScoreFunction, scheduler: AnnealedScoreScheduler) -> None:
    if scheduler.timesteps.is_floating_point():
        raise ValueError(
            f"{type(score).__name__} takes the integer timesteps of its schedule; build the scheduler with "
            "timestep_mapping='nearest'."
        )
    if score.alphas_cumprod.shape != scheduler.alphas_cumprod.shape or not torch.allclose(
        score.alphas_cumprod.cpu(), scheduler.alphas_cumprod, rtol=1e-5, atol=1e-7
    ):
        raise ValueError(
            f"The scheduler's noise schedule differs from the one {type(score).__name__} was trained on; "
            "build the scheduler from the score model's scheduler config (`from_config`)."
        )


def annealed_sample(
    predict_noise: NoisePredictor,
    scheduler: AnnealedScoreScheduler,
    shape: Sequence[int],
    *,
    num_inference_steps: int | None = None,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress_bar: Callable[[Iterable], Iterable] | None = None,
) -> torch.Tensor:
    """Samples of shape `shape` in data space from `scheduler`, over `num_inference_steps` levels or `sigmas`.

    `predict_noise(x_t, timesteps)` returns eps_hat for a batch at (batch_size,) timesteps: a `ScoreFunction`
    (which needs timestep_mapping='nearest' and the same schedule) or e.g. `lambda x, t: unet(x, t).sample`.
    The sampler starts from `latents`, the VE sample at sigma_1, default sigma_1·z.
    """
    _check_scheduler(scheduler)
    scheduler.set_timesteps(num_inference_steps, device=device, sigmas=sigmas)
    if isinstance(predict_noise, ScoreFunction):
        _check_score_function(predict_noise, scheduler)
    shape = tuple(shape)
    if latents is None:
        sample = (
            randn_tensor(shape, generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma
        )
    elif tuple(latents.shape) != shape:
        raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
    else:
        sample = latents.to(device=device, dtype=dtype)
    timesteps = scheduler.timesteps
    for t in progress_bar(timesteps) if progress_bar else timesteps:
        eps = predict_noise(scheduler.scale_model_input(sample, t), t.expand(shape[0]))
        sample = scheduler.step(eps, t, sample, generator=generator).prev_sample
    return sample


class AnnealedSamplingPipeline(DiffusionPipeline):
    r"""
    Unconditional image generation with a noise-prediction UNet sampled by ALS or CAS (`smart_hf.schedulers`).

    Args:
        unet ([`UNet2DModel`]):
            An unconditional epsilon-prediction UNet, e.g. the `unet` of a `DDPMPipeline`.
        scheduler ([`AnnealedScoreScheduler`]):
            An `AnnealedLangevinScheduler` or a `ConsistentAnnealedSamplingScheduler` on the UNet's noise
            schedule: build it from the UNet's DDPM scheduler config.

    `save_pretrained` writes a diffusers folder whose `model_index.json` names the UNet `["diffusers",
    "UNet2DModel"]` and the scheduler by its smart_hf module (`["smart_hf.schedulers.scheduling_annealed",
    "<Class>"]`); `AnnealedSamplingPipeline.from_pretrained(folder)` loads it back (with `dtype`, `variant`,
    `device_map`, ... as any diffusers pipeline) where smart_hf is installed. It is not Hub remote code, and
    `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` does not load it: remote code runs
    without smart_hf, so this file would need its own copies of the schedulers (and of `ScoreFunction`), a
    second source of classes that smart_hf already defines.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: AnnealedScoreScheduler):
        super().__init__()
        _check_scheduler(scheduler)
        config = unet.config
        if config.out_channels != config.in_channels:
            raise ValueError(
                f"The UNet maps {config.in_channels} channels to {config.out_channels}; a noise predictor "
                "for annealed sampling outputs as many channels as it reads."
            )
        if config.num_class_embeds or config.class_embed_type:
            raise ValueError("The UNet is class-conditional; annealed sampling takes unconditional UNets.")
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 100,
        sigmas: Sequence[float] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Args:
            batch_size (`int`): Number of images.
            generator (`torch.Generator`, *optional*): Makes sampling deterministic.
            num_inference_steps (`int`):
                Levels of the geometric sigma ladder (ignored when `sigmas` is given). The network runs
                `len(pipeline.scheduler.timesteps)` times: once per level for CAS, `steps_per_level` times for
                ALS, plus one with `use_eds`.
            sigmas (`list[float]`, *optional*): An explicit, strictly decreasing ladder.
            latents (`torch.Tensor`, *optional*): The starting sample at sigma_1 (default sigma_1·z).
            output_type (`str`): "pil", "np" or "pt".
            return_dict (`bool`): Return an [`ImagePipelineOutput`] rather than a tuple.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        images = annealed_sample(
            lambda x, t: self.unet(x, t).sample,
            self.scheduler,
            (batch_size, self.unet.config.in_channels, *size),
            num_inference_steps=None if sigmas is not None else num_inference_steps,
            sigmas=sigmas,
            generator=generator,
            latents=latents,
            device=self._execution_device,
            dtype=self.unet.dtype,
            progress_bar=self.progress_bar,
        )
        images = (images / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
