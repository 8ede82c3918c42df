"""Train a noise-prediction score model by denoising score matching, under `accelerate launch`.

    accelerate launch training/train_score_model.py --dataset_name digits --use_ema --output_dir digits-unet
    accelerate launch training/train_score_model.py --dataset_name grid25 --use_ema --output_dir grid25-mlp

Image data (the embedded `digits`, a Hub data set or `save_to_disk` folder via --dataset_name, or an image
folder via --train_data_dir) trains a diffusers `UNet2DModel`, class-conditional with --class_conditional,
saved as a `DDPMPipeline` folder (`model_index.json`, `unet/`, `scheduler/`) with a grid of samples
(`samples.png`). The toy 2-D mixtures (grid25, ...) train an `MLPNoisePredictor`, saved as `score_model/`
and `scheduler/`. Both load with `smart_hf.load_score_model` and serve as `--score` in
`training/train_smart_gan.py`; beside them are the loss history (`training_history.json`) and its curve
(`training_curve.png`).

The loss is the unweighted MSE between the network's output and its target — the noise for `epsilon`, the
clean sample for `sample`, the velocity a_t·eps − s_t·x0 for `v_prediction` — with t uniform over the
schedule. Checkpoints (`checkpoint-<step>/`) hold the model, its EMA, the optimizer, the learning-rate
schedule, the random states and the loss history, so `--resume_from_checkpoint latest` continues the run (a
torchelastic restart does so by itself).

--adversarial trains with the hybrid objective of Jolicoeur-Martineau et al. (ICLR 2021, "Adversarial score
matching and improved sampling for image generation"). A discriminator D tells real samples x from the
network's denoised samples x_hat = (x_t − s_t·eps_hat) / a_t (Tweedie's E[x0 | x_t], the VP form of the
paper's x + sigma²·score(x); clamped to [−1, 1] for images) with the least-squares loss and targets ±1,
(D(x) − 1)² + (D(x_hat) + 1)², and the score network minimises
dsm_weight·L_DSM + adversarial_weight·(D(x_hat) − 1)², the gradient flowing through x_hat.

Scale: the paper's L_DSM sums the squared error over the D elements of a sample (½·Σ) while its adversarial
term is a mean over the batch. This script keeps plain training's mean-MSE scale for the DSM term and
multiplies the adversarial term by 2 / D instead: the paper's objective divided by D / 2, which Adam does not
see. Defaults are the paper's: both weights 1, one D step per score step (extra D steps draw new noise for the
same real batch), D on the same noisy samples as the DSM term. D is unconditional: `DCGANDiscriminator` or
`ResNetDiscriminator` for images, `ToyDiscriminator` for the toy sets, trained with Adam(2e-4, betas (0.5,
0.999)), the DCGAN/LSGAN setting (the authors' code used beta1 = −0.5, which torch.optim.Adam refuses).
Checkpoints then also hold discriminator/ and its optimizer.

Several processes without a GPU: `accelerate launch --cpu --num_processes 2 ...`, or `torchrun`.
"""

import json
import logging
import math
import os
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image
from tqdm.auto import tqdm

from smart_hf.data import ImageDataset, check_batch_size, load_image_dataset, verify_images
from smart_hf.image_grid import image_grid
from smart_hf.models import DCGANDiscriminator, ResNetDiscriminator, ToyDiscriminator
from smart_hf.models.toy_mlp import MLPNoisePredictor
from smart_hf.toy2d import load_toy_dataset
from smart_hf.training import build
from smart_hf.training.checkpoints import (
    apply_optimizer_settings,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from smart_hf.training.config import SCORE_MODEL_RESUMABLE_SETTINGS, ScoreModelTrainingConfig
from smart_hf.training.options import to_flat
from smart_hf.training.report import save_loss_curve
from smart_hf.training.run_folder import claim_output_dir, resume_after_restart, run_identity

logger = get_logger(__name__, log_level="INFO")

DISCRIMINATORS = {"dcgan": DCGANDiscriminator, "resnet": ResNetDiscriminator}


def toy_model_and_batches(
    config: ScoreModelTrainingConfig, process_index: int
) -> tuple[MLPNoisePredictor, build.ToyBatches]:
    toy = load_toy_dataset(config.dataset_name)
    model = MLPNoisePredictor(
        data_dim=toy.means.shape[1], hidden_dim=config.hidden_dim, num_layers=config.num_layers
    )
    return model, build.ToyBatches(toy, config.train_batch_size, config.seed + process_index)


def image_model_and_batches(
    config: ScoreModelTrainingConfig, show_progress: bool = True
) -> tuple[UNet2DModel, torch.utils.data.DataLoader]:
    """The UNet and batches of the images, every one decoded once before training."""
    dataset = load_image_dataset(
        config.dataset_name,
        config.train_data_dir,
        resolution=config.resolution,
        channels=config.channels,
        class_conditional=config.class_conditional,
        dataset_config_name=config.dataset_config_name,
        image_column=config.image_column,
        label_column=config.label_column,
        cache_dir=config.cache_dir,
    )
    check_batch_size(dataset, config.train_batch_size)
    verify_images(dataset, config.dataloader_num_workers, show_progress)
    batches = build.image_batches(dataset, config.train_batch_size, config.dataloader_num_workers)
    return build_unet(config, dataset), batches


def build_unet(config: ScoreModelTrainingConfig, dataset: ImageDataset) -> UNet2DModel:
    """A plain-ResNet UNet (attention only in the middle block), cheap enough to call inside GAN training."""
    num_levels = len(config.block_out_channels)
    if dataset.resolution % 2 ** (num_levels - 1):
        raise ValueError(
            f"--resolution {dataset.resolution} must be divisible by {2 ** (num_levels - 1)} for a UNet with "
            f"{num_levels} levels (--block_out_channels {' '.join(map(str, config.block_out_channels))})."
        )
    if any(width % config.norm_num_groups for width in config.block_out_channels):
        raise ValueError(
            f"--norm_num_groups {config.norm_num_groups} must divide every --block_out_channels."
        )
    return UNet2DModel(
        sample_size=dataset.resolution,
        in_channels=dataset.channels,
        out_channels=dataset.channels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=("DownBlock2D",) * num_levels,
        up_block_types=("UpBlock2D",) * num_levels,
        norm_num_groups=config.norm_num_groups,
        num_class_embeds=dataset.num_classes,
    )


def build_discriminator(config: ScoreModelTrainingConfig, model: torch.nn.Module) -> torch.nn.Module:
    """An unconditional discriminator for the score model's samples: an MLP for points, a CNN for images."""
    if isinstance(model, MLPNoisePredictor):
        return ToyDiscriminator(data_dim=model.config.data_dim, hidden_dim=config.d_hidden_dim)
    return DISCRIMINATORS[config.d_architecture](
        in_channels=model.config.in_channels,
        resolution=model.config.sample_size,
        base_channels=config.d_base_channels,
    )


def elements_per_sample(model: torch.nn.Module) -> int:
    if isinstance(model, MLPNoisePredictor):
        return model.config.data_dim
    size = model.config.sample_size
    return model.config.in_channels * (size * size if isinstance(size, int) else math.prod(size))


def denoised_sample(
    scheduler: DDPMScheduler, noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """Tweedie's E[x0 | x_t] from the network's output: (x_t − s_t·eps_hat) / a_t for `epsilon`, the output
    for `sample`, a_t·x_t − s_t·v for `v_prediction`."""
    alphas_cumprod = scheduler.alphas_cumprod.to(noisy.device)[timesteps]
    alphas_cumprod = alphas_cumprod.reshape(-1, *([1] * (noisy.ndim - 1)))
    a_t, s_t = alphas_cumprod.sqrt(), (1 - alphas_cumprod).sqrt()
    noisy, prediction = noisy.float(), prediction.float()
    if scheduler.config.prediction_type == "epsilon":
        return (noisy - s_t * prediction) / a_t
    if scheduler.config.prediction_type == "sample":
        return prediction
    return a_t * noisy - s_t * prediction


class HybridObjective:
    """The adversarial half of the hybrid objective: the denoised samples, D's LSGAN step (targets ±1) and the
    score network's adversarial term, whose weight is adversarial_weight·2 / D (see the module docstring)."""

    def __init__(
        self,
        accelerator: Accelerator,
        noise_scheduler: DDPMScheduler,
        discriminator: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        adversarial_weight: float,
        sample_numel: int,
        clamp_to_data_range: bool,
    ):
        self.accelerator = accelerator
        self.noise_scheduler = noise_scheduler
        self.discriminator = discriminator
        self.optimizer = optimizer
        self.scale = adversarial_weight * 2 / sample_numel
        self.clamp_to_data_range = clamp_to_data_range

    def fake(self, noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_hat, the denoised sample D sees as fake (clamped to [−1, 1] for images)."""
        x_hat = denoised_sample(self.noise_scheduler, noisy, prediction, timesteps)
        return x_hat.clamp(-1, 1) if self.clamp_to_data_range else x_hat

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        logits = self.discriminator(torch.cat([real, fake.detach().to(real.dtype)])).float()
        d_real, d_fake = logits.chunk(2)
        loss = (d_real - 1).pow(2).mean() + (d_fake + 1).pow(2).mean()
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"d_loss": loss.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}

    def score_term(self, fake: torch.Tensor) -> torch.Tensor:
        """(D(x_hat) − 1)², differentiable in x_hat only: D's parameters get no gradient."""
        discriminator = self.accelerator.unwrap_model(self.discriminator)  # no DDP hooks for this pass
        discriminator.requires_grad_(False)
        logits = discriminator(fake).float()
        discriminator.requires_grad_(True)
        return (logits - 1).pow(2).mean()


def training_target(
    scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    if scheduler.config.prediction_type == "epsilon":
        return noise
    if scheduler.config.prediction_type == "sample":
        return clean
    return scheduler.get_velocity(clean, noise, timesteps)


@torch.no_grad()
def sample_images(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    num_images: int,
    num_inference_steps: int,
    seed: int,
) -> list[Image.Image]:
    """DDIM samples from `unet`, classes in turn 0, 1, 2, ... when it is class-conditional."""
    sampler = DDIMScheduler.from_config(scheduler.config)
    sampler.set_timesteps(num_inference_steps)
    config = unet.config
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(
        num_images, config.in_channels, config.sample_size, config.sample_size, generator=generator
    )
    x = x.to(unet.device)
    kwargs = {}
    if config.num_class_embeds:
        kwargs["class_labels"] = torch.arange(num_images, device=unet.device) % config.num_class_embeds
    for t in sampler.timesteps:
        x = sampler.step(unet(x, t, **kwargs).sample, t, x).prev_sample
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]


def save_trained_model(
    config: ScoreModelTrainingConfig, model: torch.nn.Module, scheduler: DDPMScheduler
) -> None:
    """A UNet as a `DDPMPipeline` folder with a grid of samples; a toy MLP as score_model/ + scheduler/."""
    if isinstance(model, MLPNoisePredictor):
        model.save_pretrained(os.path.join(config.output_dir, "score_model"))
        scheduler.save_pretrained(os.path.join(config.output_dir, "scheduler"))
        return
    DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(config.output_dir)
    if config.num_sample_images:
        samples = sample_images(
            model, scheduler, config.num_sample_images, config.num_inference_steps, config.seed
        )
        image_grid(samples).save(os.path.join(config.output_dir, "samples.png"))


def train_score_model(config: ScoreModelTrainingConfig) -> dict:
    config.check()
    accelerator = build.make_accelerator(
        config.output_dir,
        "logs",
        config.mixed_precision,
        config.logger,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )
    config.mixed_precision = accelerator.mixed_precision  # as resolved: recorded and compared on resume
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    config.resume_from_checkpoint, config.overwrite_output_dir = resume_after_restart(
        accelerator, config.output_dir, config.resume_from_checkpoint, config.overwrite_output_dir
    )
    claim_output_dir(
        accelerator,
        config.output_dir,
        run_identity(to_flat(config), SCORE_MODEL_RESUMABLE_SETTINGS),
        resume=config.resume_from_checkpoint is not None,
        overwrite=config.overwrite_output_dir,
    )
    set_seed(config.seed)

    # Data and model; bad input is refused here, before anything is written.
    is_toy = config.is_toy
    if is_toy:
        model, batches = toy_model_and_batches(config, accelerator.process_index)
        accelerator.register_for_checkpointing(batches)
    else:
        model, batches = image_model_and_batches(config, accelerator.is_local_main_process)
    model_class, model_subfolder = type(model), "score_model" if is_toy else "unet"
    discriminator = build_discriminator(config, model) if config.adversarial else None
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=config.ddpm_num_steps,
        beta_schedule=config.ddpm_beta_schedule,
        prediction_type=config.prediction_type,
    )
    ema = None
    if config.use_ema:
        ema = EMAModel(
            model.parameters(), decay=config.ema_max_decay, model_cls=model_class, model_config=model.config
        )

    def subfolder_of(prepared: torch.nn.Module) -> str:
        return model_subfolder if isinstance(prepared, model_class) else "discriminator"

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for saved in models:
                saved = accelerator.unwrap_model(saved)
                saved.save_pretrained(os.path.join(output_dir, subfolder_of(saved)))
            if ema is not None:
                ema.save_pretrained(os.path.join(output_dir, f"{model_subfolder}_ema"))
        weights.clear()  # saved above as safetensors folders; accelerate need not pickle them again

    def load_model_hook(models, input_dir):
        while models:
            target = accelerator.unwrap_model(models.pop())
            loaded = type(target).from_pretrained(input_dir, subfolder=subfolder_of(target))
            target.load_state_dict(loaded.state_dict())
        if ema is not None:
            loaded_ema = EMAModel.from_pretrained(
                os.path.join(input_dir, f"{model_subfolder}_ema"), model_class
            )
            ema.load_state_dict(loaded_ema.state_dict())
            ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    d_components = []
    if discriminator is not None:
        d_optimizer = torch.optim.Adam(
            discriminator.parameters(),
            lr=config.d_learning_rate,
            betas=(config.d_adam_beta1, config.d_adam_beta2),
        )
        d_components = [discriminator, d_optimizer]
    if is_toy:
        model, optimizer, *d_components = accelerator.prepare(model, optimizer, *d_components)
        max_train_steps, updates_per_epoch = config.max_train_steps, None
    else:
        model, optimizer, batches, *d_components = accelerator.prepare(
            model, optimizer, batches, *d_components
        )
        updates_per_epoch = math.ceil(len(batches) / config.gradient_accumulation_steps)
        max_train_steps = config.max_train_steps or config.num_epochs * updates_per_epoch
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    lr_scheduler = accelerator.prepare(lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
    hybrid = None
    if d_components:
        numel = elements_per_sample(accelerator.unwrap_model(model))
        hybrid = HybridObjective(
            accelerator, noise_scheduler, *d_components, config.adversarial_weight, numel, not is_toy
        )

    global_step, history, previous_seconds = 0, [], 0.0
    checkpoint = config.resume_from_checkpoint and find_checkpoint(
        config.output_dir, config.resume_from_checkpoint
    )
    if checkpoint:
        saved = load_checkpoint(accelerator, checkpoint)
        global_step, history, previous_seconds = (
            saved["global_step"],
            saved["history"],
            saved["train_seconds"],
        )
        betas = (config.adam_beta1, config.adam_beta2)
        apply_optimizer_settings("score model", optimizer, lr_scheduler, config.learning_rate, betas)
        if d_components:
            d_betas = (config.d_adam_beta1, config.d_adam_beta2)
            apply_optimizer_settings("discriminator", d_components[1], None, config.d_learning_rate, d_betas)
    elif config.resume_from_checkpoint:
        logger.info(f"No checkpoint in {config.output_dir}; starting a new run.")

    if accelerator.is_main_process:
        os.makedirs(config.output_dir, exist_ok=True)
        options = {key: str(value) for key, value in to_flat(config).items()}
        accelerator.init_trackers(config.tracker_project_name, config=options)

    def training_state(seconds: float) -> dict:
        return {"config": to_flat(config), "train_seconds": seconds, "history": history}

    source = config.train_data_dir or config.dataset_name
    logger.info(
        f"Training a {model_class.__name__} on {source} from step {global_step} "
        f"to {max_train_steps}, batch {config.train_batch_size} per process"
    )
    progress = tqdm(
        total=max_train_steps,
        initial=global_step,
        disable=not accelerator.is_local_main_process,
        desc="steps",
    )
    start_time = time.time()
    window: dict[str, list[float]] = defaultdict(list)

    def noisy_batch(clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, config.ddpm_num_steps, (clean.shape[0],), device=clean.device)
        return noise, timesteps, noise_scheduler.add_noise(clean, noise, timesteps)

    first_epoch = 0 if is_toy else global_step // updates_per_epoch
    epoch = first_epoch
    while global_step < max_train_steps:
        epoch_batches = batches
        if epoch == first_epoch and updates_per_epoch and global_step % updates_per_epoch:
            skipped = (global_step % updates_per_epoch) * config.gradient_accumulation_steps
            epoch_batches = accelerator.skip_first_batches(batches, skipped)
        model.train()
        for batch in epoch_batches:
            with accelerator.accumulate(model):
                clean = batch["images"].to(accelerator.device)
                kwargs = {"class_labels": batch["class_labels"]} if "class_labels" in batch else {}
                if hybrid is not None:
                    for _ in range(config.d_steps_per_score_step - 1):
                        with torch.no_grad():
                            _, timesteps, noisy = noisy_batch(clean)
                            prediction = model(noisy, timesteps, **kwargs).sample
                        hybrid.discriminator_step(clean, hybrid.fake(noisy, prediction, timesteps))
                noise, timesteps, noisy = noisy_batch(clean)
                prediction = model(noisy, timesteps, **kwargs).sample
                target = training_target(noise_scheduler, clean, noise, timesteps)
                loss = F.mse_loss(prediction.float(), target.float())
                objective = loss
                if hybrid is not None:
                    fake = hybrid.fake(noisy, prediction, timesteps)
                    for name, value in hybrid.discriminator_step(clean, fake).items():
                        window[name].append(value)
                    adversarial_loss = hybrid.score_term(fake)
                    window["adversarial_loss"].append(adversarial_loss.item())
                    objective = config.dsm_weight * loss + hybrid.scale * adversarial_loss
                accelerator.backward(objective)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window["loss"].append(loss.item())
            if not accelerator.sync_gradients:
                continue

            if ema is not None:
                ema.step(accelerator.unwrap_model(model).parameters())
            global_step += 1
            progress.update(1)
            if global_step % config.logging_steps == 0 or global_step == max_train_steps:
                logs = {name: sum(values) / len(values) for name, values in window.items()}
                logs["lr"] = lr_scheduler.get_last_lr()[0]
                window.clear()
                history.append({"step": global_step, **logs})
                progress.set_postfix(loss=f"{logs['loss']:.4f}")
                accelerator.log(logs, step=global_step)
            if config.checkpointing_steps and global_step % config.checkpointing_steps == 0:
                state = {
                    "global_step": global_step,
                    **training_state(previous_seconds + time.time() - start_time),
                }
                save_checkpoint(
                    accelerator, config.output_dir, global_step, state, config.checkpoints_total_limit
                )
            if global_step >= max_train_steps:
                break
        epoch += 1
    progress.close()

    accelerator.wait_for_everyone()
    train_seconds = previous_seconds + time.time() - start_time
    results = {"global_step": global_step, "train_seconds": train_seconds}
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        if ema is not None:
            ema.copy_to(trained.parameters())
        save_trained_model(config, trained.eval(), noise_scheduler)
        with open(os.path.join(config.output_dir, "training_history.json"), "w") as f:
            json.dump(training_state(train_seconds), f, indent=2)
        if history:
            title = f"{source}: {global_step} steps, {train_seconds / 60:.1f} min"
            save_loss_curve(history, os.path.join(config.output_dir, "training_curve.png"), title)
        results["final_loss"] = history[-1]["loss"] if history else None
        logger.info(f"Saved the score model to {config.output_dir} ({train_seconds:.0f} s of training)")
    accelerator.end_training()
    return results
