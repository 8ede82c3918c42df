"""Train a noise-prediction score model by denoising score matching, under `accelerate launch`.

    accelerate launch training/train_score_model.py --dataset_name digits --use_ema --output_dir digits-unet
    accelerate launch training/train_score_model.py --dataset_name grid25 --use_ema --output_dir grid25-mlp

Image data (the embedded `digits`, a Hub data set or `save_to_disk` folder via --dataset_name, or an image
folder via --train_data_dir) trains a diffusers `UNet2DModel`, class-conditional with --class_conditional,
saved as a `DDPMPipeline` folder (`model_index.json`, `unet/`, `scheduler/`) with a grid of samples
(`samples.png`). The toy 2-D mixtures (grid25, ring8) train an `MLPNoisePredictor`, saved as `score_model/`
and `scheduler/`. Both load with `smart_hf.load_score_model` and serve as `--score` in
`training/train_smart_gan.py`; beside them are the loss history (`training_history.json`) and its curve
(`training_curve.png`).

The loss is the unweighted MSE between the network's output and its target — the noise for `epsilon`, the
clean sample for `sample`, the velocity a_t·eps − s_t·x0 for `v_prediction` — with t uniform over the
schedule. Checkpoints (`checkpoint-<step>/`) hold the model, its EMA, the optimizer, the learning-rate
schedule, the random states and the loss history, so `--resume_from_checkpoint latest` continues the run.

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

Several processes without a GPU: `accelerate launch --cpu --num_processes 2 ...`, or `torchrun` with
`ACCELERATE_USE_CPU=1` (without it, accelerate 1.x treats each torchrun process as a separate single run).
"""

import argparse
import json
import logging
import math
import os
import shutil
import time
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.logging import get_logger  # noqa: E402
from accelerate.utils import ProjectConfiguration, set_seed  # noqa: E402
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402
from diffusers.optimization import get_scheduler  # noqa: E402
from diffusers.training_utils import EMAModel  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from smart_hf.data import DIGITS, ImageDataset, load_image_dataset  # noqa: E402
from smart_hf.image_grid import image_grid  # noqa: E402
from smart_hf.models import DCGANDiscriminator, ResNetDiscriminator, ToyDiscriminator  # noqa: E402
from smart_hf.models.toy_mlp import MLPNoisePredictor  # noqa: E402
from smart_hf.toy2d import TOY_DATASETS, ToyDataset, load_toy_dataset  # noqa: E402

logger = get_logger(__name__, log_level="INFO")

TOY_DEFAULTS = {"train_batch_size": 1024, "max_train_steps": 6000}
IMAGE_DEFAULTS = {"train_batch_size": 64}
DISCRIMINATORS = {"dcgan": DCGANDiscriminator, "resnet": ResNetDiscriminator}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_name",
        default=None,
        help=f"'{DIGITS}' (embedded, the default), a toy 2-D set {sorted(TOY_DATASETS)}, a Hub data set id "
        "or a folder written by `save_to_disk`.",
    )
    data.add_argument("--dataset_config_name", default=None, help="The Hub data set's configuration, if any.")
    data.add_argument(
        "--train_data_dir", default=None, help="An image folder (class labels from subfolders)."
    )
    data.add_argument("--image_column", default=None, help="Default: the data set's only image column.")
    data.add_argument("--label_column", default=None, help="Default: a column named 'label' or 'labels'.")
    data.add_argument(
        "--cache_dir", default=None, help="Where `datasets` caches downloads and image folders."
    )
    data.add_argument("--resolution", type=int, default=None, help="Image size (default: 8 for digits).")
    data.add_argument(
        "--channels", type=int, default=None, choices=[1, 3], help="Default: 1 for digits, else 3."
    )
    data.add_argument("--class_conditional", action="store_true", help="Condition the UNet on class labels.")
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    model = parser.add_argument_group("model")
    model.add_argument("--block_out_channels", type=int, nargs="+", default=[32, 64, 64], help="UNet widths.")
    model.add_argument("--layers_per_block", type=int, default=1, help="UNet ResNet layers per resolution.")
    model.add_argument("--norm_num_groups", type=int, default=8, help="UNet GroupNorm groups.")
    model.add_argument("--hidden_dim", type=int, default=256, help="Toy MLP width.")
    model.add_argument("--num_layers", type=int, default=4, help="Toy MLP residual blocks.")

    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument(
        "--ddpm_num_steps", "--num_train_timesteps", dest="ddpm_num_steps", type=int, default=1000
    )
    diffusion.add_argument("--ddpm_beta_schedule", default="linear", choices=["linear", "squaredcos_cap_v2"])
    diffusion.add_argument(
        "--prediction_type", default="epsilon", choices=["epsilon", "v_prediction", "sample"]
    )

    training = parser.add_argument_group("training")
    training.add_argument("--output_dir", default="outputs/score-model")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--train_batch_size", type=int, default=None, help="Default: 1024 toy, 64 images.")
    training.add_argument(
        "--num_epochs", type=int, default=100, help="Image data; --max_train_steps overrides."
    )
    training.add_argument(
        "--max_train_steps", type=int, default=None, help="Optimizer steps (toy default 6000)."
    )
    training.add_argument("--gradient_accumulation_steps", type=int, default=1)
    training.add_argument("--learning_rate", type=float, default=1e-3)
    training.add_argument("--lr_scheduler", default="cosine", help="A diffusers `get_scheduler` name.")
    training.add_argument("--lr_warmup_steps", type=int, default=0)
    training.add_argument("--adam_beta1", type=float, default=0.9)
    training.add_argument("--adam_beta2", type=float, default=0.999)
    training.add_argument("--adam_weight_decay", type=float, default=0.0)
    training.add_argument("--adam_epsilon", type=float, default=1e-8)
    training.add_argument("--max_grad_norm", type=float, default=None, help="Clip gradients to this norm.")
    training.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    training.add_argument(
        "--use_ema", action="store_true", help="Save an exponential moving average of weights."
    )
    training.add_argument("--ema_max_decay", type=float, default=0.999)

    adversarial = parser.add_argument_group("hybrid objective (--adversarial)")
    adversarial.add_argument(
        "--adversarial", action="store_true", help="Add the LSGAN term on denoised samples (see above)."
    )
    adversarial.add_argument("--adversarial_weight", type=float, default=1.0, help="lambda_adv.")
    adversarial.add_argument("--dsm_weight", type=float, default=1.0, help="lambda_dsm.")
    adversarial.add_argument("--d_steps_per_score_step", type=int, default=1)
    adversarial.add_argument("--d_learning_rate", type=float, default=2e-4)
    adversarial.add_argument("--d_adam_beta1", type=float, default=0.5)
    adversarial.add_argument("--d_adam_beta2", type=float, default=0.999)
    adversarial.add_argument(
        "--d_architecture", default="dcgan", choices=sorted(DISCRIMINATORS), help="Images."
    )
    adversarial.add_argument(
        "--d_base_channels", type=int, default=32, help="Discriminator channels at full resolution (images)."
    )
    adversarial.add_argument("--d_hidden_dim", type=int, default=128, help="Toy discriminator width.")

    logging_group = parser.add_argument_group("checkpoints, logging and samples")
    logging_group.add_argument("--checkpointing_steps", type=int, default=500, help="0 = no checkpoints.")
    logging_group.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N.")
    logging_group.add_argument(
        "--resume_from_checkpoint", default=None, help="A checkpoint folder or 'latest'."
    )
    logging_group.add_argument("--logger", default="none", choices=["none", "tensorboard", "wandb"])
    logging_group.add_argument("--logging_steps", type=int, default=100, help="Loss history resolution.")
    logging_group.add_argument(
        "--num_sample_images", type=int, default=64, help="Final sample grid; 0 = none."
    )
    logging_group.add_argument(
        "--num_inference_steps", type=int, default=100, help="DDIM steps for the grid."
    )
    args = parser.parse_args(argv)

    if args.dataset_name is None and args.train_data_dir is None:
        args.dataset_name = DIGITS
    defaults = TOY_DEFAULTS if args.dataset_name in TOY_DATASETS else IMAGE_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


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


def toy_model_and_batches(
    args: argparse.Namespace, process_index: int
) -> tuple[MLPNoisePredictor, ToyBatches]:
    toy = load_toy_dataset(args.dataset_name)
    model = MLPNoisePredictor(
        data_dim=toy.means.shape[1], hidden_dim=args.hidden_dim, num_layers=args.num_layers
    )
    return model, ToyBatches(toy, args.train_batch_size, args.seed + process_index)


def image_model_and_batches(args: argparse.Namespace) -> tuple[UNet2DModel, torch.utils.data.DataLoader]:
    dataset = load_image_dataset(
        args.dataset_name,
        args.train_data_dir,
        resolution=args.resolution,
        channels=args.channels,
        class_conditional=args.class_conditional,
        dataset_config_name=args.dataset_config_name,
        image_column=args.image_column,
        label_column=args.label_column,
        cache_dir=args.cache_dir,
    )
    batches = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=len(dataset) >= args.train_batch_size,
        num_workers=args.dataloader_num_workers,
    )
    return build_unet(args, dataset), batches


def build_unet(args: argparse.Namespace, dataset: ImageDataset) -> UNet2DModel:
    """A plain-ResNet UNet (attention only in the middle block), cheap enough to call inside GAN training."""
    num_levels = len(args.block_out_channels)
    if dataset.resolution % 2 ** (num_levels - 1):
        raise ValueError(
            f"--resolution {dataset.resolution} must be divisible by {2 ** (num_levels - 1)} for a UNet with "
            f"{num_levels} levels (--block_out_channels {' '.join(map(str, args.block_out_channels))})."
        )
    if any(width % args.norm_num_groups for width in args.block_out_channels):
        raise ValueError(f"--norm_num_groups {args.norm_num_groups} must divide every --block_out_channels.")
    return UNet2DModel(
        sample_size=dataset.resolution,
        in_channels=dataset.channels,
        out_channels=dataset.channels,
        block_out_channels=tuple(args.block_out_channels),
        layers_per_block=args.layers_per_block,
        down_block_types=("DownBlock2D",) * num_levels,
        up_block_types=("UpBlock2D",) * num_levels,
        norm_num_groups=args.norm_num_groups,
        num_class_embeds=dataset.num_classes,
    )


def check_adversarial_args(args: argparse.Namespace) -> None:
    if not args.adversarial:
        return
    if args.gradient_accumulation_steps != 1:
        raise ValueError(
            "--adversarial needs --gradient_accumulation_steps 1: the discriminator and score steps "
            "alternate with two optimizers. Raise --train_batch_size instead."
        )
    if args.d_steps_per_score_step < 1:
        raise ValueError(f"--d_steps_per_score_step must be >= 1, got {args.d_steps_per_score_step}.")
    if args.adversarial_weight < 0 or args.dsm_weight < 0:
        raise ValueError(
            f"--adversarial_weight and --dsm_weight must be >= 0, got {args.adversarial_weight} and "
            f"{args.dsm_weight}."
        )


def build_discriminator(args: argparse.Namespace, model: torch.nn.Module) -> torch.nn.Module:
    """An unconditional discriminator for the score model's samples: an MLP for points, a CNN for images."""
    if isinstance(model, MLPNoisePredictor):
        return ToyDiscriminator(data_dim=model.config.data_dim, hidden_dim=args.d_hidden_dim)
    return DISCRIMINATORS[args.d_architecture](
        in_channels=model.config.in_channels,
        resolution=model.config.sample_size,
        base_channels=args.d_base_channels,
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


def find_checkpoint(output_dir: str, resume_from_checkpoint: str) -> str | None:
    """The checkpoint folder to resume from; `None` when 'latest' finds none (a fresh start)."""
    if resume_from_checkpoint != "latest":
        for path in (resume_from_checkpoint, os.path.join(output_dir, resume_from_checkpoint)):
            if os.path.isdir(path):
                return path
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint folder.")
    checkpoints = sorted_checkpoints(output_dir)
    return os.path.join(output_dir, checkpoints[-1]) if checkpoints else None


def sorted_checkpoints(output_dir: str) -> list[str]:
    if not os.path.isdir(output_dir):
        return []
    names = [name for name in os.listdir(output_dir) if name.startswith("checkpoint-")]
    return sorted(names, key=lambda name: int(name.split("-")[1]))


def prune_checkpoints(output_dir: str, keep: int) -> None:
    """Delete the oldest checkpoints so that `keep` remain, making room for one more."""
    checkpoints = sorted_checkpoints(output_dir)
    for name in checkpoints[: max(0, len(checkpoints) - keep)]:
        logger.info(f"Removing old checkpoint {name}")
        shutil.rmtree(os.path.join(output_dir, name))


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


def save_trained_model(args: argparse.Namespace, model: torch.nn.Module, scheduler: DDPMScheduler) -> None:
    """A UNet as a `DDPMPipeline` folder with a grid of samples; a toy MLP as score_model/ + scheduler/."""
    if isinstance(model, MLPNoisePredictor):
        model.save_pretrained(os.path.join(args.output_dir, "score_model"))
        scheduler.save_pretrained(os.path.join(args.output_dir, "scheduler"))
        return
    DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(args.output_dir)
    if args.num_sample_images:
        samples = sample_images(model, scheduler, args.num_sample_images, args.num_inference_steps, args.seed)
        image_grid(samples).save(os.path.join(args.output_dir, "samples.png"))


def save_loss_curve(history: list[dict], path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax.set(
        xlabel="optimizer step", ylabel="denoising loss (mean over logging window)", yscale="log", title=title
    )
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(args: argparse.Namespace) -> dict:
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")
        ),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(args.seed)

    # Data and model; bad input is refused here, before anything is written.
    check_adversarial_args(args)
    is_toy = args.dataset_name in TOY_DATASETS
    if is_toy:
        model, batches = toy_model_and_batches(args, accelerator.process_index)
        accelerator.register_for_checkpointing(batches)
    else:
        model, batches = image_model_and_batches(args)
    model_class, model_subfolder = type(model), "score_model" if is_toy else "unet"
    discriminator = build_discriminator(args, model) if args.adversarial else None
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps,
        beta_schedule=args.ddpm_beta_schedule,
        prediction_type=args.prediction_type,
    )
    ema = None
    if args.use_ema:
        ema = EMAModel(
            model.parameters(), decay=args.ema_max_decay, model_cls=model_class, model_config=model.config
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
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    d_components = []
    if discriminator is not None:
        d_optimizer = torch.optim.Adam(
            discriminator.parameters(),
            lr=args.d_learning_rate,
            betas=(args.d_adam_beta1, args.d_adam_beta2),
        )
        d_components = [discriminator, d_optimizer]
    if is_toy:
        model, optimizer, *d_components = accelerator.prepare(model, optimizer, *d_components)
        max_train_steps, updates_per_epoch = args.max_train_steps, None
    else:
        model, optimizer, batches, *d_components = accelerator.prepare(
            model, optimizer, batches, *d_components
        )
        updates_per_epoch = math.ceil(len(batches) / args.gradient_accumulation_steps)
        max_train_steps = args.max_train_steps or args.num_epochs * updates_per_epoch
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    lr_scheduler = accelerator.prepare(lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
    hybrid = None
    if d_components:
        numel = elements_per_sample(accelerator.unwrap_model(model))
        hybrid = HybridObjective(
            accelerator, noise_scheduler, *d_components, args.adversarial_weight, numel, not is_toy
        )

    global_step, history, previous_seconds = 0, [], 0.0
    checkpoint = args.resume_from_checkpoint and find_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint:
        logger.info(f"Resuming from {checkpoint}")
        accelerator.load_state(checkpoint)
        global_step = int(os.path.basename(os.path.normpath(checkpoint)).split("-")[1])
        with open(os.path.join(checkpoint, "training_history.json")) as f:
            saved = json.load(f)
        history, previous_seconds = saved["history"], saved["train_seconds"]
    elif args.resume_from_checkpoint:
        logger.info(f"No checkpoint in {args.output_dir}; starting a new run.")

    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        accelerator.init_trackers("train_score_model", config={k: str(v) for k, v in vars(args).items()})

    def training_state(seconds: float) -> dict:
        return {"config": vars(args), "train_seconds": seconds, "history": history}

    source = args.train_data_dir or args.dataset_name
    logger.info(
        f"Training a {model_class.__name__} on {source} from step {global_step} "
        f"to {max_train_steps}, batch {args.train_batch_size} per process"
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
        timesteps = torch.randint(0, args.ddpm_num_steps, (clean.shape[0],), device=clean.device)
        return noise, timesteps, noise_scheduler.add_noise(clean, noise, timesteps)

    first_epoch = 0 if is_toy else global_step // updates_per_epoch
    epoch = first_epoch
    while global_step < max_train_steps:
        epoch_batches = batches
        if epoch == first_epoch and updates_per_epoch and global_step % updates_per_epoch:
            skipped = (global_step % updates_per_epoch) * args.gradient_accumulation_steps
            epoch_batches = accelerator.skip_first_batches(batches, skipped)
        model.train()
        for batch in epoch_batches:
            with accelerator.accumulate(model):
                clean = batch["images"].to(accelerator.device)
                kwargs = {"class_labels": batch["class_labels"]} if "class_labels" in batch else {}
                if hybrid is not None:
                    for _ in range(args.d_steps_per_score_step - 1):
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
                    objective = args.dsm_weight * loss + hybrid.scale * adversarial_loss
                accelerator.backward(objective)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
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
            if global_step % args.logging_steps == 0 or global_step == max_train_steps:
                logs = {name: sum(values) / len(values) for name, values in window.items()}
                logs["lr"] = lr_scheduler.get_last_lr()[0]
                window.clear()
                history.append({"step": global_step, **logs})
                progress.set_postfix(loss=f"{logs['loss']:.4f}")
                accelerator.log(logs, step=global_step)
            if (
                args.checkpointing_steps
                and global_step % args.checkpointing_steps == 0
                and accelerator.is_main_process
            ):
                if args.checkpoints_total_limit:
                    prune_checkpoints(args.output_dir, args.checkpoints_total_limit - 1)
                checkpoint = os.path.join(args.output_dir, f"checkpoint-{global_step}")
                accelerator.save_state(checkpoint)
                with open(os.path.join(checkpoint, "training_history.json"), "w") as f:
                    json.dump(training_state(previous_seconds + time.time() - start_time), f, indent=2)
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
        save_trained_model(args, trained.eval(), noise_scheduler)
        with open(os.path.join(args.output_dir, "training_history.json"), "w") as f:
            json.dump(training_state(train_seconds), f, indent=2)
        if history:
            title = f"{source}: {global_step} steps, {train_seconds / 60:.1f} min"
            save_loss_curve(history, os.path.join(args.output_dir, "training_curve.png"), title)
        results["final_loss"] = history[-1]["loss"] if history else None
        logger.info(f"Saved the score model to {args.output_dir} ({train_seconds:.0f} s of training)")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    main(parse_args())
