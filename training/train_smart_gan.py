"""Train a one-step GAN generator with SMaRt (score matching regularity), under `accelerate launch`.

    accelerate launch training/train_smart_gan.py --config training/configs/digits.yaml --output_dir out/dg
    accelerate launch training/train_smart_gan.py --dataset_name grid25 --score analytic --output_dir out/gr
    torchrun --nproc_per_node 2 training/train_smart_gan.py --config training/configs/digits.yaml

Data: images from the embedded `digits`, a Hub data set or a `save_to_disk` folder (--dataset_name) or an
image folder (--train_data_dir), read by `smart_hf.data.load_image_dataset`; or a toy 2-D mixture (grid25,
ring8). The frozen score model (--score) is a diffusers noise predictor, a folder or a Hub id (default for
digits: the shipped `digits-unet`), or for toy data the exact score of the mixture (`analytic`). It stays out
of `accelerator.prepare`: its weights never change, but SMaRt's gradient flows through it into the generator.

Each step runs --d_steps_per_g_step discriminator steps, then one generator step, with
`smart_hf.losses.GANLoss` (adversarial loss; lazy R1 for D; lazy SMaRt for G). D's inputs can be masked
(--masked_gan, MaskedGAN) and diffused (--diffusion_gan, Diffusion-GAN), D's features modulated by noise
with a consistency loss (--nice, NICE), and the fakes refined along D's gradient (--nats, NATS); separate
Adam settings per network give TTUR (--config training/configs/ttur.yaml). A class-conditional run passes
the batch's class labels to G, D and the score model. A step whose loss is not finite on some process is not
applied; after --max_nonfinite_steps such steps in a row the run stops, naming the checkpoint to resume from.

Checkpoints (`checkpoint-<step>/`: generator/, discriminator/, generator_ema/, training_state.json with the
step counters and the EMA state, and accelerate's optimizer and random states) continue with
--resume_from_checkpoint latest. The output folder gets generator/ (and generator_ema/) and metrics.json,
which `smart-hf export` reads; image runs also get samples.png, samples/ (grids during training) and
pipeline/ (a Hub-ready export, uploaded with --push_to_hub); toy runs get a scatter plot. Presets of the
paper's settings: --config training/configs/<name>.yaml (repeatable), overridden by flags on the command line.
"""

import argparse
import copy
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.logging import get_logger  # noqa: E402
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed  # noqa: E402
from diffusers.models.modeling_utils import ModelMixin  # noqa: E402
from diffusers.optimization import get_scheduler  # noqa: E402
from diffusers.training_utils import EMAModel  # noqa: E402
from torch.optim.swa_utils import update_bn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

# Checkpoint folders and toy batches work as in the score-model script, which shares the output layout.
from train_score_model import ToyBatches, find_checkpoint, prune_checkpoints  # noqa: E402
from transformers.optimization import get_wsd_schedule  # noqa: E402

import smart_hf  # noqa: E402
from smart_hf import hub  # noqa: E402
from smart_hf.data import DIGITS, load_image_dataset  # noqa: E402
from smart_hf.diffusion_gan import T_SAMPLINGS, DiffusionAugment  # noqa: E402
from smart_hf.hub import _sample_grid as sample_grid  # noqa: E402
from smart_hf.losses import ADVERSARIAL_LOSSES, DiscriminatorAugmentation, GANLoss  # noqa: E402
from smart_hf.masked_gan import BalancedSpectralMask, ShiftedSpatialMask  # noqa: E402
from smart_hf.models import (  # noqa: E402
    DCGANDiscriminator,
    DCGANGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    ToyDiscriminator,
    ToyGenerator,
)
from smart_hf.nats import ANNEAL_SCHEDULES, NATSRefiner  # noqa: E402
from smart_hf.nice import NICERegularizer  # noqa: E402
from smart_hf.scores import ScoreFunction, load_score_model  # noqa: E402
from smart_hf.smart import GRADIENT_MODES, SmartRegularizer  # noqa: E402
from smart_hf.toy2d import TOY_DATASETS, ToyDataset, load_toy_dataset, toy_metrics  # noqa: E402

logger = get_logger(__name__, log_level="INFO")

DEFAULT_DATASET = "grid25"
DIGITS_SCORE = os.path.join(os.path.dirname(smart_hf.__file__), "assets", "score_models", "digits-unet")
ARCHITECTURES = {
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "resnet": (ResNetGenerator, ResNetDiscriminator),
}
MODEL_FOLDERS = ("generator", "discriminator")  # in the order of `accelerator.prepare`
EMA_FOLDER = "generator_ema"
BATCH_NORM_RECALIBRATION_BATCHES = 50
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "warmup_stable_decay",
)
STATE_NAME = "training_state.json"
# Settings that do not change the trained model, left out of the model card.
NOT_TRAINING_SETTINGS = {
    "config",
    "output_dir",
    "logging_dir",
    "logger",
    "cache_dir",
    "dataloader_num_workers",
    "resume_from_checkpoint",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "logging_steps",
    "save_images_steps",
    "num_sample_images",
    "num_eval_samples",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "max_nonfinite_steps",
}


def step_or_none(value: str) -> int | None:
    """A step number, or 'none' for never (so a flag can switch off what a config file sets)."""
    return None if value.lower() == "none" else int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help="A YAML or JSON file of option values (keys: option names without '--'), e.g. a preset from "
        "training/configs/; may be repeated (later files override earlier ones, e.g. digits.yaml then "
        "ttur.yaml); options given on the command line override them all.",
    )
    data = parser.add_argument_group("data and output")
    data.add_argument(
        "--dataset_name",
        default=None,
        help=f"A toy 2-D set {sorted(TOY_DATASETS)} (default {DEFAULT_DATASET}), '{DIGITS}' (embedded 8×8 "
        "digits), a Hub data set id (owner/name) or a folder written by `save_to_disk`.",
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
    data.add_argument(
        "--resolution", type=int, default=None, help="Image size (default: the score model's, 8 for digits)."
    )
    data.add_argument(
        "--channels", type=int, default=None, choices=[1, 3], help="Default: the score model's channels."
    )
    data.add_argument(
        "--class_conditional", action="store_true", help="Condition G, D and the score model on class labels."
    )
    data.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="Train on this many images drawn at random with --seed (images only; e.g. 180 = 10%% of the "
        "digits, a small-data regime); above the data set's size, all of it (with a warning).",
    )
    data.add_argument("--dataloader_num_workers", type=int, default=0)
    data.add_argument("--output_dir", default="outputs/smart-gan")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument(
        "--num_eval_samples", type=int, default=2500, help="Samples for the final metrics (and the toy plot)."
    )

    score = parser.add_argument_group("score model")
    score.add_argument(
        "--score",
        default=None,
        help="A pretrained noise predictor: folder or Hub id (a DDPMPipeline, or a model with a scheduler). "
        f"Default: 'analytic' (the exact mixture score) for toy data, {DIGITS_SCORE} for digits.",
    )

    model = parser.add_argument_group("models")
    model.add_argument(
        "--model_architecture", default="resnet", choices=sorted(ARCHITECTURES), help="Images."
    )
    model.add_argument(
        "--g_base_channels", type=int, default=64, help="Generator channels at full resolution (images)."
    )
    model.add_argument(
        "--d_base_channels", type=int, default=64, help="Discriminator channels at full resolution (images)."
    )
    model.add_argument("--latent_dim", type=int, default=8)
    model.add_argument("--hidden_dim", type=int, default=256, help="Toy MLP width.")
    model.add_argument(
        "--d_hidden_dim", type=int, default=None, help="Toy MLP discriminator width (default: --hidden_dim)."
    )
    model.add_argument("--num_layers", type=int, default=3, help="Toy MLP depth.")
    model.add_argument(
        "--generator_batch_norm", action="store_true", help="Toy MLP generator: BatchNorm after each layer."
    )
    model.add_argument(
        "--freeze_batch_norm_step",
        type=step_or_none,
        default=None,
        help="From this generator step on, the generator's BatchNorm layers normalize with fixed statistics "
        "(recomputed for the weights at that step) instead of each batch's: the generator then trains as it "
        "samples, without the batch-to-batch jitter of its outputs. 'none' (the default): never.",
    )
    model.add_argument(
        "--g_fourier_scale",
        type=float,
        default=0.0,
        help="Toy MLP generator: feed it --fourier_features random Fourier features of the latent, "
        "frequencies ~ N(0, scale²) (0 = off).",
    )
    model.add_argument(
        "--d_fourier_scale",
        type=float,
        default=0.0,
        help="Toy MLP discriminator: the same for its input point (0 = off).",
    )
    model.add_argument(
        "--fourier_features",
        type=int,
        default=64,
        help="Toy MLPs: how many Fourier features (sin and cos each).",
    )

    training = parser.add_argument_group("training")
    training.add_argument("--max_train_steps", type=int, default=4000, help="Generator steps.")
    training.add_argument("--train_batch_size", type=int, default=256, help="Per process.")
    training.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=1,
        help="Only 1 is supported: the alternating two-optimizer GAN step does not accumulate; raise "
        "--train_batch_size or use more processes instead.",
    )
    training.add_argument("--d_steps_per_g_step", type=int, default=1)
    training.add_argument("--loss", default="non_saturating", choices=ADVERSARIAL_LOSSES)
    training.add_argument("--r1_gamma", type=float, default=0.0, help="R1 penalty weight (0 = off).")
    training.add_argument(
        "--r1_interval", type=int, default=4, help="Lazy R1: apply every N discriminator steps."
    )
    training.add_argument(
        "--g_learning_rate", type=float, default=1e-4, help="Generator learning rate (TTUR)."
    )
    training.add_argument(
        "--d_learning_rate", type=float, default=3e-4, help="Discriminator learning rate (TTUR)."
    )
    training.add_argument(
        "--lr_scheduler",
        default="constant",
        choices=LR_SCHEDULERS,
        help="diffusers' `get_scheduler`, applied to both learning rates over --max_train_steps; "
        "warmup_stable_decay (transformers' WSD) holds the rate, then decays it linearly to 0 over "
        "the last --lr_decay_steps.",
    )
    training.add_argument("--lr_warmup_steps", type=int, default=0, help="Generator steps of warm-up.")
    training.add_argument(
        "--lr_decay_steps",
        type=int,
        default=None,
        help="warmup_stable_decay only: generator steps of the final linear decay (default: last quarter).",
    )
    training.add_argument("--adam_beta1", type=float, default=0.0)
    training.add_argument("--adam_beta2", type=float, default=0.9)
    training.add_argument(
        "--g_adam_betas",
        type=float,
        nargs=2,
        default=None,
        metavar=("BETA1", "BETA2"),
        help="The generator's Adam betas (TTUR; default: --adam_beta1 --adam_beta2).",
    )
    training.add_argument(
        "--d_adam_betas",
        type=float,
        nargs=2,
        default=None,
        metavar=("BETA1", "BETA2"),
        help="The discriminator's Adam betas (TTUR; default: --adam_beta1 --adam_beta2).",
    )
    training.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    training.add_argument("--use_ema", action="store_true", help="Keep an EMA of the generator (exported).")
    training.add_argument("--ema_max_decay", type=float, default=0.999)
    training.add_argument(
        "--ema_inv_gamma", type=float, default=1.0, help="EMA warm-up: 1 − (1 + step/γ)^−power."
    )
    training.add_argument("--ema_power", type=float, default=0.75)
    training.add_argument(
        "--max_nonfinite_steps",
        type=int,
        default=5,
        help="Stop after this many steps in a row with a non-finite loss (such steps are never applied).",
    )

    smart = parser.add_argument_group("SMaRt regularizer")
    smart.add_argument("--smart_weight", type=float, default=0.1, help="lambda; 0 trains the plain GAN.")
    smart.add_argument("--smart_t_min", type=int, default=25)
    smart.add_argument("--smart_t_max", type=int, default=35)
    smart.add_argument("--smart_interval", type=int, default=8, help="Lazy: apply every N generator steps.")
    smart.add_argument(
        "--smart_warmup_start", type=int, default=0, help="Generator step where lambda starts to rise."
    )
    smart.add_argument("--smart_warmup_steps", type=int, default=0, help="Linear lambda warm-up length.")
    smart.add_argument("--smart_gradient", default="full", choices=GRADIENT_MODES)
    smart.add_argument(
        "--smart_scale_by_interval", action="store_true", help="Multiply lambda by the interval."
    )
    smart.add_argument(
        "--smart_noise_draws",
        type=int,
        default=1,
        help="(t, noise) draws per generated sample, averaged: a less noisy SMaRt gradient for as many times "
        "the score evaluations.",
    )

    efficient = parser.add_argument_group("data-efficient discriminator")
    efficient.add_argument(
        "--diffusion_gan",
        action="store_true",
        help="Diffusion-GAN: diffuse D's real and fake inputs by an adaptive number of steps T; D is told t.",
    )
    efficient.add_argument("--diffusion_gan_t_min", type=int, default=5, help="Smallest (and first) T.")
    efficient.add_argument(
        "--diffusion_gan_t_max",
        type=int,
        default=None,
        help="Largest T (default: 1000 for priority sampling, 500 for uniform).",
    )
    efficient.add_argument(
        "--diffusion_gan_sampling",
        default="priority",
        choices=T_SAMPLINGS,
        help="How the non-zero half of the t-list is drawn from 1..T: p(t) ∝ t, or uniformly.",
    )
    efficient.add_argument(
        "--diffusion_gan_d_target", type=float, default=0.6, help="Target of r_d = E[sign(D(diffused real))]."
    )
    efficient.add_argument(
        "--diffusion_gan_ada_kimg",
        type=float,
        default=100.0,
        help="Thousands of real samples for T to go from T_min to T_max.",
    )
    efficient.add_argument(
        "--diffusion_gan_sigma", type=float, default=0.05, help="Noise scale (0.05 for images in [−1, 1])."
    )
    efficient.add_argument(
        "--masked_gan",
        default="none",
        choices=["none", "spatial", "spectral", "both"],
        help="MaskedGAN (images): mask D's real and fake inputs by shifted patches and/or frequency bands.",
    )
    efficient.add_argument(
        "--mask_ratio", type=float, default=0.3, help="Fraction of pixels masked (spatial)."
    )
    efficient.add_argument("--mask_patch_size", type=int, default=4, help="Patch size in pixels (spatial).")
    efficient.add_argument("--mask_num_bands", type=int, default=4, help="Radial frequency bands (spectral).")
    efficient.add_argument(
        "--mask_bands_per_image", type=int, default=1, help="Bands removed from each image (spectral)."
    )
    efficient.add_argument(
        "--nice",
        action="store_true",
        help="NICE: multiply D's later features by N(1, beta²) noise in the discriminator phase, with an "
        "adaptive beta and a consistency loss between two noisy passes.",
    )
    efficient.add_argument(
        "--nice_target", type=float, default=0.6, help="beta rises while E[sign(D(real))] exceeds this."
    )
    efficient.add_argument("--nice_beta_max", type=float, default=1.0, help="Largest beta.")
    efficient.add_argument(
        "--nice_ada_kimg",
        type=float,
        default=100.0,
        help="Thousands of real samples for beta to cross [0, max].",
    )
    efficient.add_argument(
        "--nice_interval", type=int, default=4, help="Discriminator steps between two beta adjustments."
    )
    efficient.add_argument(
        "--nice_consistency_weight", type=float, default=1.0, help="Weight of the consistency loss."
    )

    nats = parser.add_argument_group("NATS (annealed functional-gradient refinement)")
    nats.add_argument(
        "--nats",
        action="store_true",
        help="Refine fakes along D's input gradient, x ← x + eta·w·∇_x D(x); D trains on the refined fakes, "
        "G also regresses onto them; w anneals over training. Image exports then include the discriminator.",
    )
    nats.add_argument("--nats_steps", type=int, default=5, help="Refinement steps K.")
    nats.add_argument("--nats_step_size", type=float, default=0.25, help="Step size eta.")
    nats.add_argument(
        "--nats_anneal",
        default="linear",
        choices=ANNEAL_SCHEDULES,
        help="How the weight goes from 1 to --nats_final_weight.",
    )
    nats.add_argument(
        "--nats_anneal_steps",
        type=int,
        default=None,
        help="Generator steps of the annealing (default: --max_train_steps).",
    )
    nats.add_argument("--nats_final_weight", type=float, default=0.0, help="Weight after the annealing.")
    nats.add_argument(
        "--nats_step_decay", type=float, default=1.0, help="Each refinement step's weight times this."
    )
    nats.add_argument(
        "--nats_regression_weight",
        type=float,
        default=1.0,
        help="Weight of G's regression onto its refined samples (0 = D-side only).",
    )

    outputs = parser.add_argument_group("checkpoints, logging, samples and the Hub")
    outputs.add_argument("--checkpointing_steps", type=int, default=500, help="0 = no checkpoints.")
    outputs.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints."
    )
    outputs.add_argument("--resume_from_checkpoint", default=None, help="A checkpoint folder or 'latest'.")
    outputs.add_argument("--logger", default="none", choices=["none", "tensorboard", "wandb"])
    outputs.add_argument("--logging_dir", default="logs", help="Tracker folder, inside --output_dir.")
    outputs.add_argument("--logging_steps", type=int, default=100, help="Steps averaged per logged value.")
    outputs.add_argument(
        "--save_images_steps",
        type=int,
        default=500,
        help="Sample grid into samples/ every N steps; 0 = none.",
    )
    outputs.add_argument("--num_sample_images", type=int, default=64, help="Images per sample grid.")
    outputs.add_argument(
        "--push_to_hub", action="store_true", help="Upload the exported pipeline at the end."
    )
    outputs.add_argument("--hub_model_id", default=None, help="Hub repository (user/name) for --push_to_hub.")
    outputs.add_argument("--hub_private_repo", action="store_true")
    return parser


def config_arguments(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The options of a YAML/JSON config file as command-line tokens, so they are type-checked like flags and
    flags placed after them win."""
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of option names to values.")
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    tokens = []
    for key, value in config.items():
        action = actions.get(key)
        if action is None or key in ("help", "config"):
            raise ValueError(f"{path}: unknown option {key!r}; keys are option names without '--'.")
        flag = action.option_strings[0]
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise ValueError(f"{path}: {key} is a switch; give true or false, not {value!r}.")
            tokens += [flag] if value else []
        elif isinstance(value, list):  # an option of several values, e.g. d_adam_betas: [0.0, 0.9]
            tokens += [flag, *map(str, value)]
        elif value is not None:
            tokens += [flag, str(value)]
    return tokens


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config", action="append", default=[])
    config_paths = config_parser.parse_known_args(argv)[0].config
    args = parser.parse_args(
        [token for path in config_paths for token in config_arguments(path, parser)] + argv
    )

    if args.dataset_name is None and args.train_data_dir is None:
        args.dataset_name = DEFAULT_DATASET
    if args.score is None and args.train_data_dir is None:
        if args.dataset_name in TOY_DATASETS:
            args.score = "analytic"
        elif args.dataset_name == DIGITS:
            args.score = DIGITS_SCORE
    if args.diffusion_gan_t_max is None:  # the paper's T_max for each sampling
        args.diffusion_gan_t_max = 1000 if args.diffusion_gan_sampling == "priority" else 500
    for betas in ("g_adam_betas", "d_adam_betas"):  # TTUR: each optimizer's betas, the shared ones by default
        if getattr(args, betas) is None:
            setattr(args, betas, [args.adam_beta1, args.adam_beta2])
    if args.nats and args.nats_anneal_steps is None and args.nats_anneal != "constant":
        args.nats_anneal_steps = args.max_train_steps
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse settings this script cannot honour, before anything is loaded or written."""
    if args.gradient_accumulation_steps != 1:
        raise ValueError(
            "--gradient_accumulation_steps > 1 is not supported: the discriminator and generator steps "
            "alternate with two optimizers. Raise --train_batch_size or train on more processes instead."
        )
    if args.lr_warmup_steps < 0:
        raise ValueError(f"--lr_warmup_steps must be >= 0, got {args.lr_warmup_steps}.")
    if args.lr_decay_steps is not None:
        if args.lr_scheduler != "warmup_stable_decay":
            raise ValueError(
                f"--lr_decay_steps sets the decay of --lr_scheduler warmup_stable_decay; "
                f"--lr_scheduler is {args.lr_scheduler}. Drop it or change the scheduler."
            )
        if not 0 < args.lr_decay_steps <= args.max_train_steps - args.lr_warmup_steps:
            raise ValueError(
                f"--lr_decay_steps must be in [1, max_train_steps - lr_warmup_steps = "
                f"{args.max_train_steps - args.lr_warmup_steps}], got {args.lr_decay_steps}."
            )
    is_toy = args.dataset_name in TOY_DATASETS
    if is_toy and (args.train_data_dir or args.class_conditional):
        raise ValueError(f"--dataset_name {args.dataset_name} is a toy 2-D set: it takes no image options.")
    fourier_on = args.g_fourier_scale or args.d_fourier_scale
    if not is_toy and fourier_on:
        raise ValueError(
            "--g_fourier_scale and --d_fourier_scale give the toy MLPs Fourier features of their inputs; "
            f"{args.dataset_name} is an image data set: drop them."
        )
    if not fourier_on and args.fourier_features != build_parser().get_default("fourier_features"):
        raise ValueError(
            "--fourier_features only acts with --g_fourier_scale or --d_fourier_scale > 0: add one, or "
            "drop it."
        )
    if args.g_fourier_scale < 0 or args.d_fourier_scale < 0 or args.fourier_features < 1:
        raise ValueError(
            "--g_fourier_scale and --d_fourier_scale must be >= 0 (0 = off) and --fourier_features >= 1, "
            f"got {args.g_fourier_scale}, {args.d_fourier_scale} and {args.fourier_features}."
        )
    if is_toy and args.max_train_samples is not None:
        raise ValueError(
            f"--max_train_samples subsets an image data set, but {args.dataset_name} is a toy 2-D set whose "
            "batches are drawn afresh every step: drop --max_train_samples."
        )
    if args.max_train_samples is not None and args.max_train_samples < 1:
        raise ValueError(
            f"--max_train_samples must be >= 1, got {args.max_train_samples}; leave it out to train on all "
            "images."
        )
    name = args.dataset_name
    if (
        not is_toy
        and args.train_data_dir is None
        and name != DIGITS
        and "/" not in name
        and not os.path.isdir(name)
    ):
        raise ValueError(
            f"Unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}, or for images '{DIGITS}', "
            "a Hub data set id (owner/name) or a folder."
        )
    if args.score is None:
        raise ValueError(
            f"Pass --score: the score model (a folder or Hub id) trained on {args.train_data_dir or name}."
        )
    if args.d_steps_per_g_step < 1:
        raise ValueError(f"--d_steps_per_g_step must be >= 1, got {args.d_steps_per_g_step}.")
    if args.max_nonfinite_steps < 1:
        raise ValueError(f"--max_nonfinite_steps must be >= 1, got {args.max_nonfinite_steps}.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/smart-gan-digits).")
    if is_toy and args.masked_gan != "none":
        raise ValueError(
            f"--masked_gan {args.masked_gan} masks image patches and 2-D frequency bands; --dataset_name "
            f"{name} is a toy 2-D set. Use --masked_gan none (--diffusion_gan works on toy data)."
        )
    if args.freeze_batch_norm_step is not None:
        if args.freeze_batch_norm_step < 0:
            raise ValueError(f"--freeze_batch_norm_step must be >= 0, got {args.freeze_batch_norm_step}.")
        if is_toy and not args.generator_batch_norm:
            raise ValueError(
                "--freeze_batch_norm_step freezes the generator's BatchNorm, and the toy generator has none: "
                "add --generator_batch_norm or drop --freeze_batch_norm_step."
            )
    for betas in ("g_adam_betas", "d_adam_betas"):
        if not all(0 <= beta < 1 for beta in getattr(args, betas)):
            raise ValueError(f"--{betas} must lie in [0, 1), got {getattr(args, betas)} (TTUR: 0 0.9).")
    check_nice_and_nats(args, is_toy)
    checkpoint = args.resume_from_checkpoint and find_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint:
        check_checkpoint_timesteps(args, checkpoint)


def check_checkpoint_timesteps(args: argparse.Namespace, checkpoint: str) -> None:
    """The checkpoint's discriminator must have the timestep input this run gives it (t_max + 1 embeddings
    with --diffusion_gan, none without)."""
    with open(os.path.join(checkpoint, "discriminator", "config.json")) as f:
        saved = json.load(f).get("num_timesteps", 0)
    needed = args.diffusion_gan_t_max + 1 if args.diffusion_gan else 0
    if saved != needed:
        built, wanted = (
            f"for Diffusion-GAN with t_max {n - 1}" if n else "without Diffusion-GAN" for n in (saved, needed)
        )
        raise ValueError(
            f"The discriminator in {checkpoint} was built {built}, but this run needs one {wanted}: resume "
            "with the checkpoint's --diffusion_gan and --diffusion_gan_t_max, or start a new run in another "
            "--output_dir."
        )


def build_score(args: argparse.Namespace, toy: ToyDataset | None, dtype: torch.dtype) -> ScoreFunction:
    if args.score == "analytic":
        if toy is None:
            raise ValueError(
                "--score analytic is the exact score of a toy 2-D set; pass a score model for images."
            )
        return toy.analytic_score()
    if not os.path.exists(args.score) and args.score.count("/") != 1:
        raise ValueError(
            f"--score {args.score!r}: no such folder, and not a Hub id; use 'analytic' or a path."
        )
    return load_score_model(args.score, torch_dtype=dtype)


def build_image_models(
    args: argparse.Namespace, sample_shape: tuple[int, ...], num_classes: int | None
) -> tuple[ModelMixin, ModelMixin]:
    generator_class, discriminator_class = ARCHITECTURES[args.model_architecture]
    channels, resolution, _ = sample_shape
    generator = generator_class(
        latent_dim=args.latent_dim,
        out_channels=channels,
        resolution=resolution,
        num_classes=num_classes,
        base_channels=args.g_base_channels,
    )
    discriminator = discriminator_class(
        in_channels=channels,
        resolution=resolution,
        num_classes=num_classes,
        num_timesteps=discriminator_timesteps(args),
        base_channels=args.d_base_channels,
    )
    return generator, discriminator


def discriminator_timesteps(args: argparse.Namespace) -> int:
    """Size of D's timestep input: t = 0..t_max with --diffusion_gan, none (0) without."""
    return args.diffusion_gan_t_max + 1 if args.diffusion_gan else 0


def build_discriminator_augmentations(
    args: argparse.Namespace, resolution: int | None, accelerator: Accelerator
) -> list[DiscriminatorAugmentation]:
    """MaskedGAN's masks, then Diffusion-GAN's diffusion, as configured; adaptive ones are checkpointed.

    Their statistics are summed over processes, so every process adapts alike."""

    def all_reduce(stats: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(stats, reduction="sum")

    augmentations: list[DiscriminatorAugmentation] = []
    if args.masked_gan in ("spatial", "both"):
        augmentations.append(ShiftedSpatialMask(args.mask_ratio, args.mask_patch_size))
    if args.masked_gan in ("spectral", "both"):
        spectral = BalancedSpectralMask(
            resolution, args.mask_num_bands, args.mask_bands_per_image, all_reduce=all_reduce
        )
        augmentations.append(spectral)
        accelerator.register_for_checkpointing(spectral)
    if args.diffusion_gan:
        diffusion = DiffusionAugment(
            t_min=args.diffusion_gan_t_min,
            t_max=args.diffusion_gan_t_max,
            sampling=args.diffusion_gan_sampling,
            d_target=args.diffusion_gan_d_target,
            ada_kimg=args.diffusion_gan_ada_kimg,
            sigma=args.diffusion_gan_sigma,
            all_reduce=all_reduce,
        )
        augmentations.append(diffusion)
        accelerator.register_for_checkpointing(diffusion)
    return augmentations


def check_nice_and_nats(args: argparse.Namespace, is_toy: bool) -> None:
    """Refuse --nice_*/--nats_* options given without their switch, and bad NICE/NATS values."""
    parser = build_parser()
    for switch in ("nice", "nats"):
        given = [
            f"--{key}"
            for key, value in sorted(vars(args).items())
            if key.startswith(f"{switch}_") and value != parser.get_default(key)
        ]
        if given and not getattr(args, switch):
            raise ValueError(f"{' '.join(given)} only act with --{switch}: add --{switch}, or drop them.")
    if args.nice:
        NICERegularizer.check_settings(**nice_settings(args))
    if args.nats:
        if args.nats_anneal == "constant" and (
            args.nats_anneal_steps is not None
            or args.nats_final_weight != parser.get_default("nats_final_weight")
        ):
            raise ValueError(
                "--nats_anneal constant keeps the weight at 1: drop --nats_anneal_steps and "
                "--nats_final_weight, or choose --nats_anneal linear or cosine."
            )
        build_nats(args, is_toy)  # checks the values


def nice_settings(args: argparse.Namespace) -> dict:
    return {
        "target": args.nice_target,
        "beta_max": args.nice_beta_max,
        "ada_kimg": args.nice_ada_kimg,
        "interval": args.nice_interval,
        "consistency_weight": args.nice_consistency_weight,
    }


def build_nice(
    args: argparse.Namespace, discriminator: ModelMixin, accelerator: Accelerator
) -> NICERegularizer | None:
    """NICE's hooks on the bare discriminator (its default layers), beta adapted alike on every process and
    checkpointed; None without --nice."""
    if not args.nice:
        return None
    nice = NICERegularizer(
        discriminator,
        **nice_settings(args),
        all_reduce=lambda stats: accelerator.reduce(stats, reduction="sum"),
    )
    accelerator.register_for_checkpointing(nice)
    return nice


def build_nats(args: argparse.Namespace, is_toy: bool) -> NATSRefiner:
    """The refiner of --nats; refined images are clipped to the generator's range [−1, 1]."""
    return NATSRefiner(
        num_steps=args.nats_steps,
        step_size=args.nats_step_size,
        anneal=args.nats_anneal,
        anneal_steps=args.nats_anneal_steps,
        final_weight=args.nats_final_weight,
        step_decay=args.nats_step_decay,
        regression_weight=args.nats_regression_weight,
        clip=None if is_toy else (-1.0, 1.0),
    )


def endless_batches(accelerator: Accelerator, dataloader, start_batch: int):
    """Batches of successive epochs from batch `start_batch` on. With accelerate's seedable sampler, epoch e
    is shuffled by seed + e on every process, so a resumed run sees the batches an uninterrupted run would."""
    epoch, skip = divmod(start_batch, len(dataloader))
    while True:
        dataloader.set_epoch(epoch)
        yield from accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        epoch, skip = epoch + 1, 0


def averaged_generator(generator: ModelMixin, ema: EMAModel | None, args: argparse.Namespace) -> ModelMixin:
    """An eval-mode copy of `generator` holding the EMA weights when there is an EMA.

    `EMAModel` averages parameters only, so the BatchNorm statistics the live generator gathered do not fit
    the averaged weights (on grid25 they cost most of the high-quality samples): the copy gets its own,
    recomputed by `recalibrate_batch_norm`.
    """
    averaged = copy.deepcopy(generator).requires_grad_(False)
    if ema is not None:
        ema.copy_to(averaged.parameters())
        recalibrate_batch_norm(averaged, args.train_batch_size, args.seed)
    return averaged.eval()


def freeze_batch_norm(generator: ModelMixin, args: argparse.Namespace, recalibrate: bool) -> None:
    """Put the generator's BatchNorm layers in eval mode for the rest of training, with statistics recomputed
    for its present weights (`recalibrate`; a resumed run keeps those of its checkpoint)."""
    if recalibrate:
        recalibrate_batch_norm(generator, args.train_batch_size, args.seed)
    for module in generator.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


class _KeywordForward(torch.nn.Module):
    """Calls the wrapped model with a batch of keyword arguments, as `update_bn` passes one input only."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**inputs)


def recalibrate_batch_norm(
    generator: ModelMixin, batch_size: int, seed: int, num_batches: int = BATCH_NORM_RECALIBRATION_BATCHES
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


def learning_rate_scheduler(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer, num_processes: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`--lr_scheduler` over --max_train_steps: diffusers' schedules, and transformers' warmup-stable-decay
    with a linear decay over the last --lr_decay_steps (default: the last quarter)."""
    warmup_steps, training_steps = args.lr_warmup_steps * num_processes, args.max_train_steps * num_processes
    if args.lr_scheduler == "warmup_stable_decay":
        decay_steps = args.lr_decay_steps or (args.max_train_steps - args.lr_warmup_steps) // 4
        return get_wsd_schedule(
            optimizer,
            num_warmup_steps=warmup_steps,
            num_decay_steps=max(decay_steps, 1) * num_processes,
            num_training_steps=training_steps,
            decay_type="linear",
        )
    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=training_steps,
    )


def apply_update(accelerator: Accelerator, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
    """Backpropagate `loss` and step `optimizer`, unless the loss is non-finite on some process: then no
    process applies anything (they must agree, or the gradient all-reduce would hang). True when applied."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if accelerator.gather(finite).min().item() == 0:
        return False
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    optimizer.step()
    return True


@dataclass
class TrainingProgress:
    """Counters saved with every checkpoint (training_state.json)."""

    global_step: int = 0  # generator steps
    discriminator_step: int = 0  # discriminator steps = batches drawn per process
    nonfinite_steps: int = 0  # steps not applied because a loss was not finite
    train_seconds: float = 0.0


class LogWindow:
    """Means of the logged values since the last report (SMaRt and R1 run only on some steps)."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def add(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.values.setdefault(key, []).append(value)

    def pop_means(self) -> dict[str, float]:
        means = {key: sum(values) / len(values) for key, values in self.values.items()}
        self.values.clear()
        return means


@torch.no_grad()
def generate(
    generator_model: ModelMixin, num_images: int, batch_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`num_images` samples in [−1, 1] (and their uniformly drawn class labels) from fixed latents."""
    rng = torch.Generator().manual_seed(seed)
    config, device = generator_model.config, generator_model.device
    latents = torch.randn(num_images, config.latent_dim, generator=rng)
    labels = torch.randint(config.num_classes, (num_images,), generator=rng) if config.num_classes else None
    images = []
    for start in range(0, num_images, batch_size):
        batch_labels = None if labels is None else labels[start : start + batch_size].to(device)
        images.append(generator_model(latents[start : start + batch_size].to(device), batch_labels).float())
    return torch.cat(images), labels


def real_images(dataset, num_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`num_images` training images (and labels, when the data set has them) drawn without replacement."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=num_images, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    batch = next(iter(loader))
    return batch["images"], batch.get("class_labels")


@torch.no_grad()
def score_matching_error(
    smart: SmartRegularizer, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int
) -> float:
    """Mean denoising error E||eps_hat(x_t, t) − eps||² of the frozen score model over SMaRt's t range:
    SMaRt's objective without lambda. Lower: closer to what the score model learned. Noise fixed by `seed`."""
    device = smart.score.alphas_cumprod.device
    rng = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size].to(device)
        chunk_labels = None if labels is None else labels[start : start + batch_size].to(device)
        total += smart.score_matching_loss(chunk, chunk_labels, generator=rng)[1].item() * len(chunk)
    return total / len(images)


def save_scatter(samples: torch.Tensor, dataset: ToyDataset, path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    means = dataset.means.numpy()
    ax.scatter(*samples.T.numpy(), s=2, alpha=0.4, label="generated")
    ax.scatter(*means.T, s=20, c="red", marker="x", label="modes")
    limit = float(dataset.means.abs().max()) * 1.4
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=title)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def finish_toy(args: argparse.Namespace, final: ModelMixin, toy: ToyDataset, results: dict) -> dict:
    """Metrics, scatter plot and raw samples of a toy run."""
    eval_latents = torch.randn(
        args.num_eval_samples, args.latent_dim, generator=torch.Generator().manual_seed(args.seed)
    )
    with torch.no_grad():
        samples = final(eval_latents.to(final.device)).float().cpu()
    results = {**toy_metrics(samples, toy, seed=args.seed), **results, "config": vars(args)}
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
        json.dump(results, f, indent=2)
    title = (
        f"{args.dataset_name}: {results['modes_covered']}/{results['num_modes']} modes, "
        f"{results['high_quality_percent']:.1f}% HQ"
    )
    save_scatter(samples, toy, os.path.join(args.output_dir, "samples.png"), title)
    np.save(os.path.join(args.output_dir, "samples.npy"), samples.numpy())
    logger.info(f"{title}; outputs in {args.output_dir}")
    return results


def finish_images(
    args: argparse.Namespace,
    final: ModelMixin,
    dataset,
    smart: SmartRegularizer,
    results: dict,
    discriminator: ModelMixin | None = None,
) -> dict:
    """Metrics, sample grid and exported pipeline of an image run (with `discriminator`, for the pipeline's
    refinement, when given); pushes the export with --push_to_hub."""
    num = min(args.num_eval_samples, len(dataset))
    fake, fake_labels = generate(final, num, args.train_batch_size, args.seed)
    real, real_labels = real_images(dataset, num, args.seed)
    results["num_train_images"] = len(dataset)
    results["score_matching_error"] = score_matching_error(
        smart, fake, fake_labels, args.train_batch_size, args.seed
    )
    results["score_matching_error_real"] = score_matching_error(
        smart, real, real_labels, args.train_batch_size, args.seed
    )
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
        json.dump({**results, "config": vars(args)}, f, indent=2)
    samples_path = os.path.join(args.output_dir, "samples.png")
    sample_grid(final, args.num_sample_images, args.seed).save(samples_path)

    export_dir = os.path.join(args.output_dir, "pipeline")
    settings = {
        key: value
        for key, value in vars(args).items()
        if key not in NOT_TRAINING_SETTINGS and value is not None
    }
    hub.export_pipeline(
        final,
        export_dir,
        discriminator_model=discriminator,
        score_model=args.score,
        dataset=args.dataset_name or os.path.basename(os.path.normpath(args.train_data_dir)),
        metrics=results,
        training_config=settings,
        repo_id=args.hub_model_id,
        num_samples=args.num_sample_images,
        seed=args.seed,
        overwrite=True,
    )
    logger.info(
        f"Exported the pipeline to {export_dir}; samples in {samples_path}, metrics in "
        f"{os.path.join(args.output_dir, 'metrics.json')}"
    )
    if args.push_to_hub:
        url = hub.push_to_hub(export_dir, args.hub_model_id, private=args.hub_private_repo)
        logger.info(f"Pushed {export_dir} to {url}")
    return results


def cpu_processes() -> bool:
    """Whether this is one of several processes (torchrun) on a machine without an accelerator: accelerate
    then needs `cpu=True` to join them with gloo, or each process would train alone."""
    has_accelerator = (
        torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    )
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


def main(args: argparse.Namespace) -> dict:
    check_args(args)
    accelerator = Accelerator(
        cpu=cpu_processes(),
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(args.seed, device_specific=True)  # different latents on every process; DDP syncs the weights
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )

    # Data and the frozen score model; every bad input is refused here, before training.
    is_toy = args.dataset_name in TOY_DATASETS
    toy = load_toy_dataset(args.dataset_name) if is_toy else None
    score = build_score(args, toy, weight_dtype).to(accelerator.device)
    if is_toy:
        dataset, num_classes = None, None
        batches = ToyBatches(toy, args.train_batch_size, args.seed + accelerator.process_index)
        generator = ToyGenerator(
            args.latent_dim,
            toy.means.shape[1],
            args.hidden_dim,
            args.num_layers,
            args.generator_batch_norm,
            args.fourier_features,
            args.g_fourier_scale,
        )
        discriminator = ToyDiscriminator(
            toy.means.shape[1],
            args.d_hidden_dim or args.hidden_dim,
            args.num_layers,
            discriminator_timesteps(args),
            args.fourier_features,
            args.d_fourier_scale,
        )
        sample_shape: tuple[int, ...] = (toy.means.shape[1],)
    else:
        score_shape = score.sample_shape if len(score.sample_shape) == 3 else (None, None, None)
        dataset = load_image_dataset(
            args.dataset_name,
            args.train_data_dir,
            resolution=args.resolution or score_shape[1],
            channels=args.channels or score_shape[0],
            class_conditional=args.class_conditional,
            dataset_config_name=args.dataset_config_name,
            image_column=args.image_column,
            label_column=args.label_column,
            cache_dir=args.cache_dir,
        )
        if args.max_train_samples is not None:
            if args.max_train_samples > len(dataset):
                logger.warning(
                    f"--max_train_samples {args.max_train_samples} exceeds the {len(dataset)} images of "
                    f"{args.train_data_dir or args.dataset_name}: training on all of them."
                )
            dataset = dataset.subset(args.max_train_samples, args.seed)
        num_classes, sample_shape = dataset.num_classes, dataset.sample_shape
        generator, discriminator = build_image_models(args, sample_shape, num_classes)
        batches = torch.utils.data.DataLoader(
            dataset,
            batch_size=args.train_batch_size,
            shuffle=True,
            drop_last=len(dataset) >= args.train_batch_size,  # no tiny last batch for BatchNorm
            num_workers=args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(args.seed),
        )
    score.check_compatible(sample_shape, num_classes)
    smart = SmartRegularizer(  # also checks the t range; lambda = 0 trains the plain GAN
        score,
        weight=args.smart_weight,
        t_min=args.smart_t_min,
        t_max=args.smart_t_max,
        interval=args.smart_interval,
        warmup_steps=args.smart_warmup_steps,
        warmup_start=args.smart_warmup_start,
        gradient_mode=args.smart_gradient,
        scale_by_interval=args.smart_scale_by_interval,
        noise_draws=args.smart_noise_draws,
    )

    optimizer_g = torch.optim.Adam(
        generator.parameters(), lr=args.g_learning_rate, betas=tuple(args.g_adam_betas)
    )
    optimizer_d = torch.optim.Adam(
        discriminator.parameters(), lr=args.d_learning_rate, betas=tuple(args.d_adam_betas)
    )
    if is_toy:
        generator, discriminator, optimizer_g, optimizer_d = accelerator.prepare(
            generator, discriminator, optimizer_g, optimizer_d
        )
        accelerator.register_for_checkpointing(batches)
    else:
        generator, discriminator, optimizer_g, optimizer_d, batches = accelerator.prepare(
            generator, discriminator, optimizer_g, optimizer_d, batches
        )
    # Stepped once per generator step on every process; accelerate's prepared scheduler counts each
    # process's step, hence the factor (as in diffusers' training scripts).
    lr_scheduler_g, lr_scheduler_d = accelerator.prepare(
        *(
            learning_rate_scheduler(args, optimizer, accelerator.num_processes)
            for optimizer in (optimizer_g, optimizer_d)
        )
    )
    unwrapped_generator = accelerator.unwrap_model(generator)
    ema = None
    if args.use_ema:  # after `prepare`, which gives every process the weights of process 0
        ema = EMAModel(
            unwrapped_generator.parameters(),
            decay=args.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=args.ema_inv_gamma,
            power=args.ema_power,
        )
    augmentations = build_discriminator_augmentations(args, None if is_toy else sample_shape[1], accelerator)
    nice = build_nice(args, accelerator.unwrap_model(discriminator), accelerator)
    nats = build_nats(args, is_toy) if args.nats else None
    gan_loss = GANLoss(
        generator,
        discriminator,
        args.loss,
        args.r1_gamma,
        args.r1_interval,
        smart,
        augmentations,
        nice=nice,
        nats=nats,
    )
    progress = TrainingProgress()

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for folder, model in zip(MODEL_FOLDERS, models, strict=True):
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, folder))
            state = asdict(progress)
            if ema is not None:
                averaged_generator(unwrapped_generator, ema, args).save_pretrained(
                    os.path.join(output_dir, EMA_FOLDER)
                )
                state["ema"] = {
                    key: value for key, value in ema.state_dict().items() if key != "shadow_params"
                }
            with open(os.path.join(output_dir, STATE_NAME), "w") as f:
                json.dump(state, f, indent=2)
        weights.clear()  # saved above as safetensors folders; accelerate need not pickle them again

    def load_model_hook(models, input_dir):
        for folder, model in zip(MODEL_FOLDERS, models, strict=True):
            model = accelerator.unwrap_model(model)
            model.load_state_dict(type(model).from_pretrained(input_dir, subfolder=folder).state_dict())
        models.clear()
        with open(os.path.join(input_dir, STATE_NAME)) as f:
            state = json.load(f)
        if ema is not None:
            if "ema" not in state:
                raise ValueError(f"{input_dir} was saved without --use_ema; resume without it.")
            averaged = type(unwrapped_generator).from_pretrained(input_dir, subfolder=EMA_FOLDER)
            shadow = [p.detach().to(accelerator.device) for p in averaged.parameters()]
            ema.load_state_dict({**state.pop("ema"), "shadow_params": shadow})
        state.pop("ema", None)
        for key, value in state.items():
            setattr(progress, key, value)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    last_checkpoint = args.resume_from_checkpoint and find_checkpoint(
        args.output_dir, args.resume_from_checkpoint
    )
    if last_checkpoint:
        logger.info(f"Resuming from {last_checkpoint}")
        accelerator.load_state(last_checkpoint)
    elif args.resume_from_checkpoint:
        logger.info(f"No checkpoint in {args.output_dir}; starting a new run.")
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        accelerator.init_trackers(
            "train_smart_gan",
            config={
                key: value if isinstance(value, int | float | str | bool) else str(value)
                for key, value in vars(args).items()
            },
        )

    batch_iterator = (
        iter(batches) if is_toy else endless_batches(accelerator, batches, progress.discriminator_step)
    )
    start_step, start_time, previous_seconds = progress.global_step, time.time(), progress.train_seconds
    source = args.train_data_dir or args.dataset_name
    logger.info(
        f"Training on {source} from step {start_step} to {args.max_train_steps}, batch "
        f"{args.train_batch_size} per process on {accelerator.num_processes} process(es), "
        f"SMaRt lambda={args.smart_weight}, Diffusion-GAN {'on' if args.diffusion_gan else 'off'}, "
        f"MaskedGAN {args.masked_gan}"
    )
    progress_bar = tqdm(
        total=args.max_train_steps,
        initial=start_step,
        disable=not accelerator.is_local_main_process,
        desc="steps",
    )
    window, nonfinite_in_a_row = LogWindow(), 0
    if args.freeze_batch_norm_step is not None and start_step > args.freeze_batch_norm_step:
        freeze_batch_norm(unwrapped_generator, args, recalibrate=False)  # resumed after the freeze
    while progress.global_step < args.max_train_steps:
        step = progress.global_step
        if step == args.freeze_batch_norm_step:
            freeze_batch_norm(unwrapped_generator, args, recalibrate=True)
        applied = True
        for _ in range(args.d_steps_per_g_step):
            batch = next(batch_iterator)
            real = batch["images"].to(accelerator.device)
            class_labels = batch.get("class_labels")
            latents = torch.randn(len(real), args.latent_dim, device=accelerator.device)
            d_terms = gan_loss.discriminator_phase(
                real, latents, progress.discriminator_step, class_labels, generator_step=step
            )
            applied &= apply_update(accelerator, optimizer_d, d_terms.total)
            progress.discriminator_step += 1

        discriminator.requires_grad_(False)
        latents = torch.randn(len(real), args.latent_dim, device=accelerator.device)
        g_terms = gan_loss.generator_phase(latents, step, class_labels)
        g_applied = apply_update(accelerator, optimizer_g, g_terms.total)
        discriminator.requires_grad_(True)
        if g_applied and ema is not None:
            ema.step(unwrapped_generator.parameters())
        lr_scheduler_g.step()
        lr_scheduler_d.step()

        logs = {**d_terms.logs, **g_terms.logs}
        if args.smart_weight > 0:
            logs["smart_weight"] = smart.weight_at(step)
        progress.global_step += 1
        progress_bar.update(1)
        if applied and g_applied:
            nonfinite_in_a_row = 0
        else:
            nonfinite_in_a_row += 1
            progress.nonfinite_steps += 1
            logger.warning(
                f"Step {step}: non-finite loss, update skipped ({nonfinite_in_a_row} in a row): {logs}"
            )
            if nonfinite_in_a_row >= args.max_nonfinite_steps:
                resume = (
                    f"The last good checkpoint is {last_checkpoint}: resume with --resume_from_checkpoint "
                    f"{last_checkpoint}"
                    if last_checkpoint
                    else "No checkpoint was saved (see --checkpointing_steps); start again"
                )
                raise RuntimeError(
                    f"Stopping: {nonfinite_in_a_row} steps in a row (up to step {step}) had a non-finite "
                    f"loss ({logs}). {resume} after lowering the learning rates or lambda (--smart_weight)."
                )
        window.add({**logs, "nonfinite_steps": progress.nonfinite_steps})

        global_step = progress.global_step
        if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
            means = window.pop_means()
            progress_bar.set_postfix({key: f"{value:.3g}" for key, value in means.items()})
            accelerator.log(means, step=global_step)
        # A checkpoint is never written during a run of non-finite steps, so the latest one is a good one.
        if (
            args.checkpointing_steps
            and global_step % args.checkpointing_steps == 0
            and nonfinite_in_a_row == 0
        ):
            if accelerator.is_main_process and args.checkpoints_total_limit:
                prune_checkpoints(args.output_dir, args.checkpoints_total_limit - 1)
            progress.train_seconds = previous_seconds + time.time() - start_time
            last_checkpoint = os.path.join(args.output_dir, f"checkpoint-{global_step}")
            accelerator.save_state(last_checkpoint)  # every process writes its own random states
        if not is_toy and args.save_images_steps and global_step % args.save_images_steps == 0:
            if accelerator.is_main_process:
                save_sample_grid(
                    accelerator, args, averaged_generator(unwrapped_generator, ema, args), global_step
                )
    progress_bar.close()
    loop_seconds = time.time() - start_time

    accelerator.wait_for_everyone()
    progress.train_seconds = previous_seconds + loop_seconds
    results: dict = {}
    if accelerator.is_main_process:
        unwrapped_generator.save_pretrained(os.path.join(args.output_dir, "generator"))
        final = averaged_generator(unwrapped_generator, ema, args)
        if ema is not None:
            final.save_pretrained(os.path.join(args.output_dir, EMA_FOLDER))
        steps_run = progress.global_step - start_step
        results = {
            "global_step": progress.global_step,
            "train_seconds": progress.train_seconds,
            "seconds_per_step": loop_seconds / steps_run if steps_run else None,
            "nonfinite_steps": progress.nonfinite_steps,
        }
        if is_toy:
            results = finish_toy(args, final, toy, results)
        else:
            exported_discriminator = accelerator.unwrap_model(discriminator) if args.nats else None
            results = finish_images(args, final, dataset, smart, results, exported_discriminator)
    accelerator.end_training()
    return results


def save_sample_grid(
    accelerator: Accelerator, args: argparse.Namespace, generator: ModelMixin, step: int
) -> None:
    """A grid from fixed latents into samples/step-<step>.png, and to tensorboard."""
    grid = sample_grid(generator, args.num_sample_images, args.seed)
    os.makedirs(os.path.join(args.output_dir, "samples"), exist_ok=True)
    grid.save(os.path.join(args.output_dir, "samples", f"step-{step:06d}.png"))
    if args.logger == "tensorboard":
        pixels = np.asarray(grid)
        tracker = accelerator.get_tracker("tensorboard", unwrap=True)
        tracker.add_image("samples", pixels, step, dataformats="HW" if pixels.ndim == 2 else "HWC")


if __name__ == "__main__":
    main(parse_args())
