"""Run configurations of the two training loops, as dataclasses: the GAN (`GANTrainingConfig`) and the score
model (`ScoreModelTrainingConfig`).

Their fields are the scripts' command-line options (`smart_hf.training.options` generates the parsers); each
technique's options live in its own config beside its class (`SmartConfig` in `smart_hf.smart`, …) and appear
here as one section field. Defaults that depend on other options are filled in `__post_init__`; `check()`
refuses, in one place, the settings a run cannot honour, before anything is loaded or written.
"""

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import smart_hf
from smart_hf.data import DIGITS
from smart_hf.diffusion_gan import DiffusionGANConfig
from smart_hf.evaluation.options import DEFAULT_DINOV2_MODEL, DEFAULT_K, FEATURE_SPACES
from smart_hf.fake_score import FakeScoreConfig
from smart_hf.losses import ADVERSARIAL_LOSSES
from smart_hf.masked_gan import MaskedGANConfig
from smart_hf.nats import NATSConfig
from smart_hf.nice import NICEConfig
from smart_hf.smart import SmartConfig
from smart_hf.toy2d import TOY_DATASETS
from smart_hf.training.options import (
    build_parser,
    check_values,
    config_arguments,
    from_flat,
    iter_options,
    non_default_flags,
    option,
    parse,
    section,
    to_flat,
)

__all__ = [
    "GANTrainingConfig",
    "ScoreModelTrainingConfig",
    "config_arguments",
    "gan_parser",
    "parse_gan_args",
    "parse_score_model_args",
]

DEFAULT_GAN_DATASET = "grid25"
DIGITS_SCORE = os.path.join(os.path.dirname(smart_hf.__file__), "assets", "score_models", "digits-unet")
GAN_ARCHITECTURES = ("dcgan", "resnet")
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "warmup_stable_decay",
)
TRACKERS = ("none", "tensorboard", "wandb", "all")
# The package each tracker needs (`all`: every one installed).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
PRECISIONS = ("no", "fp16", "bf16")
SCORE_DTYPES = ("fp32", "fp16", "bf16")
# Options that do not change the trained model, left out of the model card.
NOT_TRAINING_SETTINGS = {
    "config",
    "output_dir",
    "logging_dir",
    "logger",
    "tracker_project_name",
    "cache_dir",
    "dataloader_num_workers",
    "resume_from_checkpoint",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "logging_steps",
    "save_images_steps",
    "num_sample_images",
    "num_eval_samples",
    "eval_steps",
    "eval_features",
    "eval_inception_weights",
    "eval_dinov2_model",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "hub_license",
    "max_nonfinite_steps",
    "overwrite_output_dir",
}
# Where the data and the score model come from: an export names them apart, without local paths.
SOURCE_SETTINGS = {"dataset_name", "train_data_dir", "score"}
# Options only the toy 2-D models read, left out of an image run's model card.
TOY_ONLY_SETTINGS = {
    "hidden_dim",
    "d_hidden_dim",
    "num_layers",
    "generator_batch_norm",
    "g_fourier_scale",
    "d_fourier_scale",
    "fourier_features",
}
# The option that switches each technique section on; a section's other options matter only when it is on.
TECHNIQUE_SWITCHES = {"smart_weight", "diffusion_gan", "masked_gan", "nice", "nats", "fake_score"}
# Options that may change when a run resumes (the non-finite guard's advice, a longer run); the others
# identify the run (`smart_hf.training.run_folder`).
GAN_RESUMABLE_SETTINGS = NOT_TRAINING_SETTINGS | {
    "g_learning_rate",
    "d_learning_rate",
    "adam_beta1",
    "adam_beta2",
    "g_adam_betas",
    "d_adam_betas",
    "lr_scheduler",
    "lr_warmup_steps",
    "lr_decay_steps",
    "max_train_steps",
    "smart_weight",
    "allow_tf32",
    "channels_last",
    "compile_score",
    "compile_models",
}
SCORE_MODEL_RESUMABLE_SETTINGS = {
    "output_dir",
    "overwrite_output_dir",
    "cache_dir",
    "dataloader_num_workers",
    "resume_from_checkpoint",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "logger",
    "tracker_project_name",
    "logging_steps",
    "num_sample_images",
    "num_inference_steps",
    "num_epochs",
    "max_train_steps",
    "learning_rate",
    "lr_scheduler",
    "lr_warmup_steps",
    "adam_beta1",
    "adam_beta2",
    "d_learning_rate",
    "d_adam_beta1",
    "d_adam_beta2",
}
# An option given on the command line that replaces these options of a preset (e.g. --train_data_dir trains a
# preset on one's own folder).
DATA_REPLACEMENTS = {
    "train_data_dir": ("dataset_name", "dataset_config_name", "image_column", "label_column"),
    "dataset_name": ("train_data_dir",),
}


def step_or_none(value: str) -> int | None:
    """A step number, or 'none' for never (so a flag can switch off what a config file sets)."""
    return None if value.lower() == "none" else int(value)


@dataclass
class GANTrainingConfig:
    """Everything `train_gan` reads: data, score model, models, optimisation, techniques, outputs."""

    config: list[str] | None = option(
        None,
        "A YAML or JSON file of option values (keys: option names without '--'), e.g. a preset from "
        "training/configs/; may be repeated (later files override earlier ones, e.g. digits.yaml then "
        "ttur.yaml); options given on the command line override them all.",
        action="append",
    )

    dataset_name: str | None = option(
        None,
        f"A toy 2-D set {sorted(TOY_DATASETS)} (default {DEFAULT_GAN_DATASET}), '{DIGITS}' (embedded 8×8 "
        "digits), a Hub data set id (owner/name) or a folder written by `save_to_disk`.",
        group="data and output",
    )
    dataset_config_name: str | None = option(None, "The Hub data set's configuration, if any.")
    train_data_dir: str | None = option(None, "An image folder (class labels from subfolders).")
    image_column: str | None = option(None, "Default: the data set's only image column.")
    label_column: str | None = option(None, "Default: a column named 'label' or 'labels'.")
    cache_dir: str | None = option(None, "Where `datasets` caches downloads and image folders.")
    resolution: int | None = option(None, "Image size (default: the score model's, 8 for digits).", min=1)
    channels: int | None = option(None, "Default: the score model's channels.", choices=[1, 3])
    class_conditional: bool = option(False, "Condition G, D and the score model on class labels.")
    random_flip: bool = option(
        False, "Mirror each real image left-right with probability 1/2 (natural images, not digits or text)."
    )
    max_train_samples: int | None = option(
        None,
        "Train on this many images drawn at random with --seed (images only; e.g. 180 = 10%% of the "
        "digits, a small-data regime); above the data set's size, all of it (with a warning).",
        min=1,
    )
    dataloader_num_workers: int = option(0, min=0)
    output_dir: str = option("outputs/smart-gan")
    seed: int = option(0, min=0)
    num_eval_samples: int = option(
        2500,
        "Samples for the final metrics (and the toy plot) and for --eval_steps; image runs use at most the "
        "data set's size.",
        aliases=("eval_num_samples",),
        min=1,
    )

    score: str | None = option(
        None,
        "A pretrained noise predictor: folder or Hub id (a DDPMPipeline, or a model with a scheduler). "
        f"Default: 'analytic' (the exact mixture score) for toy data, {DIGITS_SCORE} for digits.",
        group="score model",
    )

    model_architecture: str = option("resnet", "Images.", choices=sorted(GAN_ARCHITECTURES), group="models")
    g_base_channels: int = option(64, "Generator channels at full resolution (images).", min=1)
    d_base_channels: int = option(64, "Discriminator channels at full resolution (images).", min=1)
    latent_dim: int = option(8, min=1)
    hidden_dim: int = option(256, "Toy MLP width.", min=1)
    d_hidden_dim: int | None = option(None, "Toy MLP discriminator width (default: --hidden_dim).", min=1)
    num_layers: int = option(3, "Toy MLP depth.", min=1)
    generator_batch_norm: bool = option(False, "Toy MLP generator: BatchNorm after each layer.")
    freeze_batch_norm_step: int | None = option(
        None,
        "From this generator step on, the generator's BatchNorm layers normalize with fixed statistics "
        "(recomputed for the weights at that step) instead of each batch's: the generator then trains as it "
        "samples, without the batch-to-batch jitter of its outputs. 'none' (the default): never.",
        type=step_or_none,
        min=0,
    )
    g_fourier_scale: float = option(
        0.0,
        "Toy MLP generator: feed it --fourier_features random Fourier features of the latent, "
        "frequencies ~ N(0, scale²) (0 = off).",
        min=0,
    )
    d_fourier_scale: float = option(
        0.0, "Toy MLP discriminator: the same for its input point (0 = off).", min=0
    )
    fourier_features: int = option(64, "Toy MLPs: how many Fourier features (sin and cos each).", min=1)

    max_train_steps: int = option(4000, "Generator steps.", group="training", min=1)
    train_batch_size: int = option(256, "Per process.", min=1)
    gradient_accumulation_steps: int = option(
        1,
        "Only 1 is supported: the alternating two-optimizer GAN step does not accumulate; raise "
        "--train_batch_size or use more processes instead.",
    )
    d_steps_per_g_step: int = option(1, min=1)
    loss: str = option("non_saturating", choices=ADVERSARIAL_LOSSES)
    r1_gamma: float = option(0.0, "R1 penalty weight (0 = off).", min=0)
    r1_interval: int = option(4, "Lazy R1: apply every N discriminator steps.", min=1)
    g_learning_rate: float = option(1e-4, "Generator learning rate (TTUR).", above=0, max=1)
    d_learning_rate: float = option(3e-4, "Discriminator learning rate (TTUR).", above=0, max=1)
    lr_scheduler: str = option(
        "constant",
        "diffusers' `get_scheduler`, applied to both learning rates over --max_train_steps; "
        "warmup_stable_decay (transformers' WSD) holds the rate, then decays it linearly to 0 over "
        "the last --lr_decay_steps.",
        choices=LR_SCHEDULERS,
    )
    lr_warmup_steps: int = option(0, "Generator steps of warm-up.", min=0)
    lr_decay_steps: int | None = option(
        None,
        "warmup_stable_decay only: generator steps of the final linear decay (default: last quarter).",
        min=1,
    )
    adam_beta1: float = option(0.0, min=0, below=1)
    adam_beta2: float = option(0.9, min=0, below=1)
    g_adam_betas: list[float] | None = option(
        None,
        "The generator's Adam betas (TTUR; default: --adam_beta1 --adam_beta2).",
        nargs=2,
        metavar=("BETA1", "BETA2"),
        min=0,
        below=1,
    )
    d_adam_betas: list[float] | None = option(
        None,
        "The discriminator's Adam betas (TTUR; default: --adam_beta1 --adam_beta2).",
        nargs=2,
        metavar=("BETA1", "BETA2"),
        min=0,
        below=1,
    )
    mixed_precision: str | None = option(
        None,
        "Default: what `accelerate launch` says (its --mixed_precision or the accelerate config file), 'no' "
        "without it; given here, it wins. bf16/fp16 run G, D and the score model under autocast, the score "
        "model's weights in that dtype (fp16 with accelerate's loss scaling).",
        choices=PRECISIONS,
    )
    allow_tf32: bool = option(
        False, "Allow TF32 matrix multiplications and convolutions on Ampere or newer GPUs (faster fp32)."
    )
    gradient_checkpointing: bool = option(
        False,
        "Recompute the activations of G's and D's blocks and of the frozen score UNet in the backward pass "
        "instead of keeping them: less memory for about one more forward pass (images only).",
    )
    score_dtype: str | None = option(
        None,
        "The frozen score model's weights in this dtype (default: the compute dtype of --mixed_precision).",
        choices=SCORE_DTYPES,
    )
    channels_last: bool = option(
        False, "G, D and the score UNet in channels_last memory format (often faster convolutions on GPUs)."
    )
    compile_score: bool = option(False, "torch.compile the frozen score model (needs a working compiler).")
    compile_models: bool = option(
        False, "torch.compile G and D; checkpoints and exports keep the plain modules' weights."
    )
    use_ema: bool = option(False, "Keep an EMA of the generator (exported).")
    ema_max_decay: float = option(0.999, min=0, max=1)
    ema_inv_gamma: float = option(1.0, "EMA warm-up: 1 − (1 + step/γ)^−power.", above=0)
    ema_power: float = option(0.75, above=0)
    max_nonfinite_steps: int = option(
        5,
        "Stop after this many steps in a row with a non-finite loss or gradient (such steps are never "
        "applied), counting steps that compute the same terms together (lazy SMaRt and R1 steps apart).",
        min=1,
    )

    smart: SmartConfig = section(SmartConfig, "smart_", "SMaRt regularizer")
    diffusion_gan: DiffusionGANConfig = section(
        DiffusionGANConfig, "diffusion_gan_", "data-efficient discriminator"
    )
    masked_gan: MaskedGANConfig = section(MaskedGANConfig, "mask_", "data-efficient discriminator")
    nice: NICEConfig = section(NICEConfig, "nice_", "data-efficient discriminator")
    nats: NATSConfig = section(NATSConfig, "nats_", "NATS (annealed functional-gradient refinement)")
    fake_score: FakeScoreConfig = section(
        FakeScoreConfig, "fake_score_", "distribution matching against a learned score of G's samples"
    )

    eval_steps: int | None = option(
        None,
        "Every N generator steps and at the end, the main process measures FD, precision and recall of the "
        "EMA (or live) generator on --num_eval_samples images against as many training images (their "
        "features computed once, cached in --output_dir), logs them and keeps the best checkpoint by FD in "
        "checkpoint-best/. 'none' (the default): never (images only).",
        type=step_or_none,
        min=1,
        group="evaluation during training",
    )
    eval_features: str | None = option(
        None,
        "Feature space of --eval_steps, as `smart-hf evaluate --features`: digits (FD_digits, the default "
        "for the digits data and only for them), inception (FID; pytorch-fid) or dinov2 (FD_DINOv2).",
        choices=FEATURE_SPACES,
    )
    eval_inception_weights: str | None = option(
        None,
        "pytorch-fid's Inception weights file (pt_inception-2015-12-05-6726825d.pth) for offline machines; "
        "default: pytorch-fid downloads it.",
    )
    eval_dinov2_model: str = option(DEFAULT_DINOV2_MODEL, "DINOv2 Hub id or local folder.")

    checkpointing_steps: int = option(
        500, "0 = no checkpoints.", group="checkpoints, logging, samples and the Hub", min=0
    )
    checkpoints_total_limit: int | None = option(None, "Keep at most N checkpoints.", min=1)
    resume_from_checkpoint: str | None = option(None, "A checkpoint folder or 'latest'.")
    overwrite_output_dir: bool = option(
        False,
        "Delete what another run left in --output_dir and start anew (otherwise such a folder is refused).",
    )
    logger: str = option(
        "none",
        "Also --report_to, as diffusers' examples name it; all: every tracker installed.",
        choices=TRACKERS,
        aliases=("report_to",),
    )
    tracker_project_name: str = option(
        "train_smart_gan", "The trackers' project (accelerate's init_trackers)."
    )
    logging_dir: str = option("logs", "Tracker folder, inside --output_dir.")
    logging_steps: int = option(
        100,
        "Steps averaged per logged value; the learning rates (lr_g, lr_d) of the last step, the throughput "
        "(steps_per_second, seconds_per_step, images_per_second) and this process's peak memory "
        "(peak_memory_cuda_allocated_mib on CUDA, else peak_memory_rss_mib) are logged with them.",
        min=1,
    )
    save_images_steps: int = option(500, "Sample grid into samples/ every N steps; 0 = none.", min=0)
    num_sample_images: int = option(64, "Images per sample grid.", min=1)
    push_to_hub: bool = option(False, "Upload the exported pipeline at the end.")
    hub_model_id: str | None = option(None, "Hub repository (user/name) for --push_to_hub.")
    hub_private_repo: bool = option(False)
    hub_license: str = option(
        smart_hf.DEFAULT_LICENSE,
        "License of the weights: the `license` of the exported model card, a Hub license id (e.g. mit, "
        "cc-by-4.0, other).",
    )

    def __post_init__(self):
        if self.dataset_name is None and self.train_data_dir is None:
            self.dataset_name = DEFAULT_GAN_DATASET
        if self.score is None and self.train_data_dir is None:
            if self.dataset_name in TOY_DATASETS:
                self.score = "analytic"
            elif self.dataset_name == DIGITS:
                self.score = DIGITS_SCORE
        # TTUR: each optimizer's betas, the shared ones by default.
        self.g_adam_betas = list(self.g_adam_betas or [self.adam_beta1, self.adam_beta2])
        self.d_adam_betas = list(self.d_adam_betas or [self.adam_beta1, self.adam_beta2])
        if self.nats.enabled and self.nats.anneal_steps is None and self.nats.anneal != "constant":
            self.nats.anneal_steps = self.max_train_steps

    @property
    def is_toy(self) -> bool:
        return self.dataset_name in TOY_DATASETS

    @property
    def data_source(self) -> str:
        """The training data as a user named it."""
        return self.train_data_dir or self.dataset_name

    @property
    def techniques(self) -> list[str]:
        """The techniques this run uses: its switched-on sections (`smart`, `diffusion_gan`, `masked_gan`,
        `nice`, `nats`, `fake_score`), `ttur` (separate learning rates or betas for G and D) and `r1`."""
        used = {
            "smart": self.smart.weight > 0,
            "diffusion_gan": self.diffusion_gan.enabled,
            "masked_gan": self.masked_gan.mode != "none",
            "nice": self.nice.enabled,
            "nats": self.nats.enabled,
            "fake_score": self.fake_score.enabled,
            "ttur": self.g_learning_rate != self.d_learning_rate or self.g_adam_betas != self.d_adam_betas,
            "r1": self.r1_gamma > 0,
        }
        return [name for name, on in used.items() if on]

    def check(self) -> None:
        """Refuse settings the GAN loop cannot honour, before anything is loaded or written."""
        check_values(self)
        check_tracker(self.logger)
        self._check_evaluation()
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "--gradient_accumulation_steps > 1 is not supported: the discriminator and generator steps "
                "alternate with two optimizers. Raise --train_batch_size or train on more processes instead."
            )
        self._check_learning_rate_schedule()
        self._check_data()
        self._check_toy_models()
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/smart-gan-digits).")
        if self.push_to_hub and self.is_toy:
            raise ValueError(
                f"--push_to_hub uploads the pipeline an image run exports; {self.dataset_name} is a toy 2-D "
                "set, whose runs export none: drop --push_to_hub."
            )
        self._check_techniques()

    @property
    def eval_feature_space(self) -> str | None:
        """--eval_features, by default digits for the embedded digits (no default for other data)."""
        is_digits = self.dataset_name == DIGITS and self.train_data_dir is None
        return self.eval_features or ("digits" if is_digits else None)

    def _check_evaluation(self) -> None:
        given = [
            f"--{name}"
            for name in ("eval_features", "eval_inception_weights", "eval_dinov2_model")
            if getattr(self, name) != getattr(type(self), name)
        ]
        if self.eval_steps is None:
            if given:
                raise ValueError(f"{' '.join(given)} only act with --eval_steps: add it, or drop them.")
            return
        if self.is_toy:
            raise ValueError(
                f"--eval_steps measures image quality; {self.dataset_name} is a toy 2-D set (its mode "
                "coverage is measured at the end): drop --eval_steps."
            )
        space = self.eval_feature_space
        if space is None:
            raise ValueError(
                f"--eval_steps needs a feature space for {self.data_source}: pass --eval_features inception "
                "(FID) or dinov2 (the digits classifier's features fit only the embedded digits)."
            )
        if space == "digits" and not (self.dataset_name == DIGITS and self.train_data_dir is None):
            raise ValueError(
                f"--eval_features digits measures the embedded 8×8 digits (the classifier was trained on "
                f"them), not {self.data_source}: use --eval_features inception or dinov2."
            )
        if self.eval_inception_weights is not None and space != "inception":
            raise ValueError("--eval_inception_weights only acts with --eval_features inception.")
        if self.eval_dinov2_model != DEFAULT_DINOV2_MODEL and space != "dinov2":
            raise ValueError("--eval_dinov2_model only acts with --eval_features dinov2.")
        if self.num_eval_samples <= DEFAULT_K:
            raise ValueError(
                f"--eval_steps needs --num_eval_samples > {DEFAULT_K} (precision and recall's k)."
            )

    def _check_learning_rate_schedule(self) -> None:
        if self.lr_decay_steps is not None:
            if self.lr_scheduler != "warmup_stable_decay":
                raise ValueError(
                    f"--lr_decay_steps sets the decay of --lr_scheduler warmup_stable_decay; "
                    f"--lr_scheduler is {self.lr_scheduler}. Drop it or change the scheduler."
                )
            if not 0 < self.lr_decay_steps <= self.max_train_steps - self.lr_warmup_steps:
                raise ValueError(
                    f"--lr_decay_steps must be in [1, max_train_steps - lr_warmup_steps = "
                    f"{self.max_train_steps - self.lr_warmup_steps}], got {self.lr_decay_steps}."
                )

    def _check_data(self) -> None:
        name = self.dataset_name
        if self.is_toy and (self.train_data_dir or self.class_conditional or self.random_flip):
            raise ValueError(f"--dataset_name {name} is a toy 2-D set: it takes no image options.")
        if self.is_toy and self.max_train_samples is not None:
            raise ValueError(
                f"--max_train_samples subsets an image data set, but {name} is a toy 2-D set whose "
                "batches are drawn afresh every step: drop --max_train_samples."
            )
        if (
            not self.is_toy
            and self.train_data_dir is None
            and name != DIGITS
            and "/" not in name
            and not os.path.isdir(name)
        ):
            raise ValueError(
                f"Unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}, or for images "
                f"'{DIGITS}', a Hub data set id (owner/name) or a folder."
            )
        if self.score is None:
            raise ValueError(
                f"Pass --score: the score model (a folder or Hub id) trained on {self.data_source}."
            )

    def _check_toy_models(self) -> None:
        fourier_on = self.g_fourier_scale or self.d_fourier_scale
        if not self.is_toy and fourier_on:
            raise ValueError(
                "--g_fourier_scale and --d_fourier_scale give the toy MLPs Fourier features of their inputs; "
                f"{self.dataset_name} is an image data set: drop them."
            )
        if not fourier_on and self.fourier_features != type(self).fourier_features:
            raise ValueError(
                "--fourier_features only acts with --g_fourier_scale or --d_fourier_scale > 0: add one, or "
                "drop it."
            )
        if self.is_toy and self.gradient_checkpointing:
            raise ValueError(
                "--gradient_checkpointing saves activation memory of image models; the toy MLPs need none: "
                "drop it."
            )
        if self.is_toy and self.channels_last:
            raise ValueError("--channels_last is a memory format of image tensors; the toy MLPs have none.")
        if self.score == "analytic" and (self.score_dtype or self.compile_score):
            raise ValueError(
                "--score_dtype and --compile_score act on a score model; --score analytic is a formula: "
                "drop them."
            )
        if self.compile_models and not self.is_toy and self.model_architecture == "resnet":
            # Seen in benchmarks/scale.py (torch 2.13): D runs on the real batch, then on the fakes, before
            # one backward; compiled, the second call's in-place power iteration invalidates what the first
            # one's backward needs ("modified by an inplace operation"), at the first step.
            raise ValueError(
                "--compile_models fails with the resnet discriminator (spectral norm) under torch.compile: "
                "use --compile_score alone, or --model_architecture dcgan."
            )
        if self.freeze_batch_norm_step is not None:
            if self.is_toy and not self.generator_batch_norm:
                raise ValueError(
                    "--freeze_batch_norm_step freezes the generator's BatchNorm, and the toy generator has "
                    "none: add --generator_batch_norm or drop --freeze_batch_norm_step."
                )

    def _check_techniques(self) -> None:
        self.smart.check()
        if self.smart.weight > 0 and self.train_batch_size // self.smart.batch_shrink == 0:
            raise ValueError(
                f"--smart_batch_shrink {self.smart.batch_shrink} leaves no sample of a batch of "
                f"{self.train_batch_size} (--train_batch_size, per process): use at most the batch size."
            )
        if self.is_toy and self.masked_gan.mode != "none":
            raise ValueError(
                f"--masked_gan {self.masked_gan.mode} masks image patches and 2-D frequency bands; "
                f"--dataset_name {self.dataset_name} is a toy 2-D set. Use --masked_gan none "
                "(--diffusion_gan works on toy data)."
            )
        self.diffusion_gan.check()
        for name, technique in (("nice", self.nice), ("nats", self.nats), ("fake_score", self.fake_score)):
            given = non_default_flags(technique, f"{name}_")
            if given and not technique.enabled:
                raise ValueError(f"{' '.join(given)} only act with --{name}: add --{name}, or drop them.")
            if technique.enabled:
                technique.check()


def check_tracker(name: str) -> None:
    """Refuse a tracker whose package is not installed (accelerate would fail or log nothing later)."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available(), "wandb": is_wandb_available()}
    if name in available and not available[name]:
        raise ValueError(
            f"--report_to {name}: the {name} package is not installed. pip install {TRACKER_PACKAGES[name]}, "
            "or choose another tracker (or none)."
        )


def from_options(options: dict[str, Any]) -> GANTrainingConfig:
    """The run configuration of flat options as metrics.json records them (`to_flat`); keys that are no
    option (another version's) are ignored, options it lacks take their defaults."""
    fields = {flag for _, flag, _, _ in iter_options(GANTrainingConfig)}
    return from_flat(GANTrainingConfig, {key: value for key, value in options.items() if key in fields})


def recorded_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The options of a GAN run (flat, as metrics.json records them) that shaped its model, as an export's
    smart_hf.json records them: without outputs, logging and the Hub, without the data and score sources
    (which the export names apart, without local paths) and without unset (None) options."""
    left_out = NOT_TRAINING_SETTINGS | SOURCE_SETTINGS
    return {key: value for key, value in options.items() if key not in left_out and value is not None}


def changed_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The recorded settings a model card lists: those whose value is not what the defaults give (derived
    defaults included, e.g. --g_adam_betas from --adam_beta1 and --adam_beta2), without the options of
    switched-off techniques and, for image data, of the toy models. Keys that are no option (another
    version's) are kept."""
    fields = {flag: (name, field) for name, flag, field, _ in iter_options(GANTrainingConfig)}
    config = from_options(options)
    changed = {}
    for key, value in recorded_settings(options).items():
        if key in fields:
            section_name, field = fields[key]
            if section_name and section_name not in config.techniques and key not in TECHNIQUE_SWITCHES:
                continue
            if key in TOY_ONLY_SETTINGS and not config.is_toy:
                continue
            factory = field.default_factory
            default = field.default if factory is dataclasses.MISSING else factory()
            if value == to_flat(from_options({**options, key: default}))[key]:
                continue
        changed[key] = value
    return changed


SCORE_DISCRIMINATORS = ("dcgan", "resnet")
TOY_SCORE_DEFAULTS = {"train_batch_size": 1024, "max_train_steps": 6000}
IMAGE_SCORE_DEFAULTS = {"train_batch_size": 64}


@dataclass
class ScoreModelTrainingConfig:
    """Everything `train_score_model` reads: data, network, diffusion schedule, optimisation, the hybrid
    adversarial objective, outputs."""

    dataset_name: str | None = option(
        None,
        f"'{DIGITS}' (embedded, the default), a toy 2-D set {sorted(TOY_DATASETS)}, a Hub data set id "
        "or a folder written by `save_to_disk`.",
        group="data",
    )
    dataset_config_name: str | None = option(None, "The Hub data set's configuration, if any.")
    train_data_dir: str | None = option(None, "An image folder (class labels from subfolders).")
    image_column: str | None = option(None, "Default: the data set's only image column.")
    label_column: str | None = option(None, "Default: a column named 'label' or 'labels'.")
    cache_dir: str | None = option(None, "Where `datasets` caches downloads and image folders.")
    resolution: int | None = option(None, "Image size (default: 8 for digits).", min=1)
    channels: int | None = option(None, "Default: 1 for digits, else 3.", choices=[1, 3])
    class_conditional: bool = option(False, "Condition the UNet on class labels.")
    dataloader_num_workers: int = option(0, min=0)

    block_out_channels: list[int] = option([32, 64, 64], "UNet widths.", group="model", min=1)
    layers_per_block: int = option(1, "UNet ResNet layers per resolution.", min=1)
    norm_num_groups: int = option(8, "UNet GroupNorm groups.", min=1)
    hidden_dim: int = option(256, "Toy MLP width.", min=1)
    num_layers: int = option(4, "Toy MLP residual blocks.", min=1)

    ddpm_num_steps: int = option(1000, aliases=("num_train_timesteps",), group="diffusion", min=2)
    ddpm_beta_schedule: str = option("linear", choices=["linear", "squaredcos_cap_v2"])
    prediction_type: str = option("epsilon", choices=["epsilon", "v_prediction", "sample"])

    output_dir: str = option("outputs/score-model", group="training")
    seed: int = option(0, min=0)
    train_batch_size: int | None = option(None, "Default: 1024 toy, 64 images.", min=1)
    num_epochs: int = option(100, "Image data; --max_train_steps overrides.", min=1)
    max_train_steps: int | None = option(None, "Optimizer steps (toy default 6000).", min=1)
    gradient_accumulation_steps: int = option(1, min=1)
    learning_rate: float = option(1e-3, above=0, max=1)
    lr_scheduler: str = option("cosine", "A diffusers `get_scheduler` name.")
    lr_warmup_steps: int = option(0, min=0)
    adam_beta1: float = option(0.9, min=0, below=1)
    adam_beta2: float = option(0.999, min=0, below=1)
    adam_weight_decay: float = option(0.0, min=0)
    adam_epsilon: float = option(1e-8, above=0)
    max_grad_norm: float | None = option(None, "Clip gradients to this norm.", above=0)
    mixed_precision: str | None = option(
        None,
        "Default: what `accelerate launch` says (its --mixed_precision or the accelerate config file), 'no' "
        "without it; given here, it wins.",
        choices=PRECISIONS,
    )
    use_ema: bool = option(False, "Save an exponential moving average of weights.")
    ema_max_decay: float = option(0.999, min=0, max=1)

    adversarial: bool = option(
        False, "Add the LSGAN term on denoised samples (see above).", group="hybrid objective (--adversarial)"
    )
    adversarial_weight: float = option(1.0, "lambda_adv.", min=0)
    dsm_weight: float = option(1.0, "lambda_dsm.", min=0)
    d_steps_per_score_step: int = option(1, min=1)
    d_learning_rate: float = option(2e-4, above=0, max=1)
    d_adam_beta1: float = option(0.5, min=0, below=1)
    d_adam_beta2: float = option(0.999, min=0, below=1)
    d_architecture: str = option("dcgan", "Images.", choices=sorted(SCORE_DISCRIMINATORS))
    d_base_channels: int = option(32, "Discriminator channels at full resolution (images).", min=1)
    d_hidden_dim: int = option(128, "Toy discriminator width.", min=1)

    checkpointing_steps: int = option(
        500, "0 = no checkpoints.", group="checkpoints, logging and samples", min=0
    )
    checkpoints_total_limit: int | None = option(None, "Keep at most N.", min=1)
    resume_from_checkpoint: str | None = option(None, "A checkpoint folder or 'latest'.")
    overwrite_output_dir: bool = option(
        False,
        "Delete what another run left in --output_dir and start anew (otherwise such a folder is refused).",
    )
    logger: str = option(
        "none",
        "Also --report_to, as diffusers' examples name it; all: every tracker installed.",
        choices=TRACKERS,
        aliases=("report_to",),
    )
    tracker_project_name: str = option(
        "train_score_model", "The trackers' project (accelerate's init_trackers)."
    )
    logging_steps: int = option(100, "Loss history resolution.", min=1)
    num_sample_images: int = option(64, "Final sample grid; 0 = none.", min=0)
    num_inference_steps: int = option(100, "DDIM steps for the grid.", min=1)

    def __post_init__(self):
        if self.dataset_name is None and self.train_data_dir is None:
            self.dataset_name = DIGITS
        defaults = TOY_SCORE_DEFAULTS if self.is_toy else IMAGE_SCORE_DEFAULTS
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def is_toy(self) -> bool:
        return self.dataset_name in TOY_DATASETS

    def check(self) -> None:
        """Refuse settings the score-model loop cannot honour."""
        check_values(self)
        check_tracker(self.logger)
        if not self.adversarial:
            return
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "--adversarial needs --gradient_accumulation_steps 1: the discriminator and score steps "
                "alternate with two optimizers. Raise --train_batch_size instead."
            )


def gan_parser() -> argparse.ArgumentParser:
    """The command line of training/train_smart_gan.py."""
    return build_parser(GANTrainingConfig)


def parse_gan_args(argv: list[str] | None = None) -> GANTrainingConfig:
    """The GAN run configuration from the command line (`argv`, default `sys.argv[1:]`) and its --config
    presets."""
    from smart_hf.training import gan  # its docstring is the script's --help text

    return parse(GANTrainingConfig, argv, gan.__doc__, replaces=DATA_REPLACEMENTS)


def parse_score_model_args(argv: list[str] | None = None) -> ScoreModelTrainingConfig:
    """The score-model run configuration from the command line (`argv`, default `sys.argv[1:]`)."""
    from smart_hf.training import score_model  # its docstring is the script's --help text

    return parse(ScoreModelTrainingConfig, argv, score_model.__doc__, replaces=DATA_REPLACEMENTS)
