"""What a GAN run is made of, built from its `GANTrainingConfig`: the accelerator, data, the frozen score, the
models, optimizers, learning-rate schedules, the EMA, and the loss with every switched-on technique.

`build_gan_loss` is the one place where techniques are switched on: a new technique adds one line there.
"""

import os

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
from diffusers.models.modeling_utils import ModelMixin
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from transformers.optimization import get_wsd_schedule

from smart_hf.data import ImageDataset, check_batch_size, load_image_dataset, verify_images
from smart_hf.fake_score import DistributionMatching, build_fake_score_model
from smart_hf.losses import DiscriminatorAugmentation, GANLoss
from smart_hf.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    ToyDiscriminator,
    ToyGenerator,
)
from smart_hf.scores import ScoreFunction, load_score_model
from smart_hf.smart import SmartRegularizer
from smart_hf.toy2d import ToyDataset
from smart_hf.training.config import GANTrainingConfig

logger = get_logger(__name__, log_level="INFO")

GAN_MODELS = {
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "resnet": (ResNetGenerator, ResNetDiscriminator),
}


def cpu_processes() -> bool:
    """Whether this is one of several processes (torchrun) on a machine without an accelerator: accelerate
    then needs `cpu=True` to join them with gloo, or each process would train alone."""
    has_accelerator = (
        torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    )
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


def make_accelerator(
    output_dir: str,
    logging_dir: str,
    mixed_precision: str | None,
    logger_name: str,
    gradient_accumulation_steps: int = 1,
    data_seed: int | None = None,
) -> Accelerator:
    """The run's accelerator; with `data_seed`, data loaders shuffle epoch e by data_seed + e on every
    process, so a resumed run sees the batches an uninterrupted one would.

    `mixed_precision` None leaves the choice to accelerate: ACCELERATE_MIXED_PRECISION, which `accelerate
    launch` sets from its --mixed_precision or config file, else "no"."""
    return Accelerator(
        cpu=cpu_processes(),
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=None if logger_name == "none" else logger_name,
        project_config=ProjectConfiguration(
            project_dir=output_dir, logging_dir=os.path.join(output_dir, logging_dir)
        ),
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=data_seed is not None, data_seed=data_seed
        ),
    )


class ToyBatches:
    """Endless batches from a toy mixture, as `{"images": points}` so one loop trains toy and image models.

    Its random state is checkpointed, so a resumed run draws the batches the uninterrupted run would have.
    """

    def __init__(self, dataset: ToyDataset, batch_size: int, seed: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            yield {"images": self.dataset.sample(self.batch_size, generator=self.generator)}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class RandomHorizontalFlip:
    """Mirrors each real image left-right with probability 1/2 (--random_flip, as diffusers'
    train_unconditional.py does). Its random state is checkpointed, so a resumed run flips the images an
    uninterrupted run would."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(len(images), generator=self.generator) < 0.5
        return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def image_batches(
    dataset: ImageDataset, batch_size: int, num_workers: int, seed: int | None = None
) -> torch.utils.data.DataLoader:
    """Shuffled batches of `dataset`, without a tiny last batch (BatchNorm) when there is more than one."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(dataset) >= batch_size,
        num_workers=num_workers,
        generator=None if seed is None else torch.Generator().manual_seed(seed),
    )


def build_score(config: GANTrainingConfig, toy: ToyDataset | None, dtype: torch.dtype) -> ScoreFunction:
    """The frozen score: the exact score of a toy mixture ('analytic') or a pretrained noise predictor."""
    if config.score == "analytic":
        if toy is None:
            raise ValueError(
                "--score analytic is the exact score of a toy 2-D set; pass a score model for images."
            )
        return toy.analytic_score()
    if not os.path.exists(config.score) and config.score.count("/") != 1:
        raise ValueError(
            f"--score {config.score!r}: no such folder, and not a Hub id; use 'analytic' or a path."
        )
    return load_score_model(config.score, torch_dtype=dtype)


def load_gan_images(
    config: GANTrainingConfig, score_shape: tuple[int, ...], show_progress: bool = True
) -> ImageDataset:
    """The training images at the score model's size and channels (unless the options say otherwise),
    subset to --max_train_samples, every one decoded once (so a bad file stops the run before training) and
    at least one batch of them."""
    channels, resolution = (score_shape[0], score_shape[1]) if len(score_shape) == 3 else (None, None)
    dataset = load_image_dataset(
        config.dataset_name,
        config.train_data_dir,
        resolution=config.resolution or resolution,
        channels=config.channels or channels,
        class_conditional=config.class_conditional,
        dataset_config_name=config.dataset_config_name,
        image_column=config.image_column,
        label_column=config.label_column,
        cache_dir=config.cache_dir,
    )
    if config.max_train_samples is not None:
        if config.max_train_samples > len(dataset):
            logger.warning(
                f"--max_train_samples {config.max_train_samples} exceeds the {len(dataset)} images of "
                f"{config.data_source}: training on all of them."
            )
        dataset = dataset.subset(config.max_train_samples, config.seed)
    check_batch_size(dataset, config.train_batch_size)
    verify_images(dataset, config.dataloader_num_workers, show_progress)
    return dataset


def build_toy_models(config: GANTrainingConfig, toy: ToyDataset) -> tuple[ModelMixin, ModelMixin]:
    data_dim = toy.means.shape[1]
    generator = ToyGenerator(
        config.latent_dim,
        data_dim,
        config.hidden_dim,
        config.num_layers,
        config.generator_batch_norm,
        config.fourier_features,
        config.g_fourier_scale,
    )
    discriminator = ToyDiscriminator(
        data_dim,
        config.d_hidden_dim or config.hidden_dim,
        config.num_layers,
        config.diffusion_gan.num_timesteps,
        config.fourier_features,
        config.d_fourier_scale,
    )
    return generator, discriminator


def build_image_models(
    config: GANTrainingConfig, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[ModelMixin, ModelMixin]:
    generator_class, discriminator_class = GAN_MODELS[config.model_architecture]
    channels, resolution, _ = sample_shape
    generator = generator_class(
        latent_dim=config.latent_dim,
        out_channels=channels,
        resolution=resolution,
        num_classes=num_classes,
        base_channels=config.g_base_channels,
    )
    discriminator = discriminator_class(
        in_channels=channels,
        resolution=resolution,
        num_classes=num_classes,
        num_timesteps=config.diffusion_gan.num_timesteps,
        base_channels=config.d_base_channels,
    )
    return generator, discriminator


def enable_gradient_checkpointing(*models: torch.nn.Module) -> None:
    """diffusers' gradient checkpointing in each model that supports it (for the frozen score: its UNet)."""
    for model in models:
        model = getattr(model, "model", model)  # a ModelScore's noise predictor
        if getattr(model, "_supports_gradient_checkpointing", False):
            model.enable_gradient_checkpointing()
        else:
            logger.warning(f"{type(model).__name__} has no gradient checkpointing; it keeps its activations.")


SCORE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def to_channels_last(*models: torch.nn.Module) -> None:
    """Convolution weights in channels_last memory format (--channels_last): convolutions then produce
    channels_last activations, which cuDNN's and oneDNN's kernels often run faster."""
    for model in models:
        model.to(memory_format=torch.channels_last)


def check_compile() -> None:
    """Compile and run a tiny function, so a missing compiler (inductor's CPU backend needs a C++ one, its
    GPU backend Triton) stops the run now, with a clear message, not at the first step."""
    try:
        probe = torch.compile(lambda x: torch.sin(x) * 2 + 1)
        probe(torch.zeros(4))
    except Exception as error:
        raise RuntimeError(
            f"--compile_score / --compile_models: torch.compile does not work here ({type(error).__name__}: "
            f"{error}). Install what it needs (a C++ compiler for CPUs, Triton for GPUs) or drop the flags."
        ) from error


def compile_score(score: ScoreFunction) -> ScoreFunction:
    """The score with its noise predictor compiled (--compile_score); the weights stay shared and frozen."""
    if not hasattr(score, "model"):
        raise ValueError(f"--compile_score compiles a score model; {type(score).__name__} has none.")
    score.model = torch.compile(score.model)
    return score


def build_optimizers(
    config: GANTrainingConfig, generator: ModelMixin, discriminator: ModelMixin
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for each network with its own rate and betas (TTUR)."""
    return (
        torch.optim.Adam(generator.parameters(), lr=config.g_learning_rate, betas=tuple(config.g_adam_betas)),
        torch.optim.Adam(
            discriminator.parameters(), lr=config.d_learning_rate, betas=tuple(config.d_adam_betas)
        ),
    )


def learning_rate_scheduler(
    config: GANTrainingConfig, optimizer: torch.optim.Optimizer, num_processes: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`--lr_scheduler` over --max_train_steps: diffusers' schedules, and transformers' warmup-stable-decay
    with a linear decay over the last --lr_decay_steps (default: the last quarter).

    Stepped once per generator step on every process; accelerate's prepared scheduler counts each process's
    step, hence the factor (as in diffusers' training scripts)."""
    warmup_steps = config.lr_warmup_steps * num_processes
    training_steps = config.max_train_steps * num_processes
    if config.lr_scheduler == "warmup_stable_decay":
        decay_steps = config.lr_decay_steps or (config.max_train_steps - config.lr_warmup_steps) // 4
        return get_wsd_schedule(
            optimizer,
            num_warmup_steps=warmup_steps,
            num_decay_steps=max(decay_steps, 1) * num_processes,
            num_training_steps=training_steps,
            decay_type="linear",
        )
    return get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=training_steps,
    )


def build_ema(config: GANTrainingConfig, generator: ModelMixin) -> EMAModel | None:
    """The generator's EMA with warm-up (None without --use_ema); build it after `prepare`, which gives every
    process the weights of process 0."""
    if not config.use_ema:
        return None
    return EMAModel(
        generator.parameters(),
        decay=config.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=config.ema_inv_gamma,
        power=config.ema_power,
    )


def build_fake_score(
    config: GANTrainingConfig, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[ModelMixin, torch.optim.Adam] | tuple[None, None]:
    """The score model of the generator's samples and its Adam optimizer (--fake_score), or (None, None)."""
    if not config.fake_score.enabled:
        return None, None
    model = build_fake_score_model(config.fake_score, sample_shape, num_classes)
    return model, torch.optim.Adam(model.parameters(), lr=config.fake_score.learning_rate)


def build_gan_loss(
    config: GANTrainingConfig,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    smart: SmartRegularizer,
    accelerator: Accelerator,
    resolution: int | None,
    fake_score_model: torch.nn.Module | None = None,
) -> GANLoss:
    """The GAN loss with every technique the config switches on: MaskedGAN's masks then Diffusion-GAN's
    diffusion on D's inputs, NICE's noise on D's features, NATS's refinement of the fakes, distribution
    matching against `fake_score_model` (--fake_score; the real score is SMaRt's); compiled G and D with
    --compile_models.

    Adaptive techniques sum their statistics over processes (so every process adapts alike) and are
    checkpointed with the run."""

    def all_reduce(stats: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(stats, reduction="sum")

    augmentations: list[DiscriminatorAugmentation] = []
    if not config.is_toy:
        augmentations += config.masked_gan.build(resolution, all_reduce)
    if diffusion := config.diffusion_gan.build(all_reduce):
        augmentations.append(diffusion)
    nice = config.nice.build(accelerator.unwrap_model(discriminator), all_reduce)
    nats = config.nats.build(clip=None if config.is_toy else (-1.0, 1.0)) if config.nats.enabled else None
    matching = None
    if fake_score_model is not None:
        matching = DistributionMatching.from_config(smart.score, fake_score_model, config.fake_score)
    for technique in (*augmentations, nice):
        if hasattr(technique, "state_dict"):
            accelerator.register_for_checkpointing(technique)
    if config.compile_models:
        # Only the loss calls the compiled G and D, which share the plain modules' parameters: checkpoints,
        # exports and the EMA copy keep using the plain modules (state dicts without `_orig_mod.`).
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    return GANLoss(
        generator,
        discriminator,
        config.loss,
        config.r1_gamma,
        config.r1_interval,
        smart,
        augmentations,
        nice=nice,
        nats=nats,
        distribution_matching=matching,
    )
