"""Sampling benchmark: ALS, ALS + EDS, CAS and CAS + EDS at equal numbers of network evaluations (NFE).

- digits: the shipped 8×8 digits score model (digits-unet) and, with --train_digits_steps, a DSM-only UNet
  and hybrid (--adversarial) ones trained here with the shipped model's recipe, scored by FD_digits, the
  Fréchet distance in the digits classifier's features (`smart_hf.evaluation`), against all 1,797 real
  digits. Two reference rows give the scale: DDIM with as many steps, and real digits (a subset of the
  reference of the same size, the distance's small-sample floor). FD_digits is not comparable with
  published (Inception) FIDs.
- grid25: the exact score, the shipped learned score (grid25-mlp) and, with --train_grid25_steps, a DSM-only
  score model and hybrid (--adversarial) ones, one per --adversarial_weights, trained here by
  training/train_score_model.py with the same recipe, scored by the toy metrics (modes covered, % within
  3 std of a mode, sliced Wasserstein distance).

Every sampler runs the same geometric ladder from --sigma_max to --sigma_min: ALS with --nfe / 5 levels of 5
Langevin steps, CAS with --nfe levels. Each run ends with one more evaluation for EDS, so "+ EDS" is the same
trajectory denoised (NFE + 1). ALS runs at NCSNv2's step size (0.062·sigma_L²) and a larger one (0.5·sigma_L²,
better on a ladder this coarse); CAS at its default (sigma_L²·(1 − gamma²), the ancestral step) and at
eta = 1 (denoise fully, then re-noise). sigma_max defaults to about the largest distance between two data
points (NCSNv2's technique 1): 10 for digits, 12 for grid25.

    OMP_NUM_THREADS=1 python -m benchmarks.sampling --num_samples 500 --nfe 100 \
        --train_grid25_steps 3000 --adversarial_weights 1 0.1
    OMP_NUM_THREADS=1 python -m benchmarks.sampling --parts digits --train_digits_steps 1500

Samplers start from the same seed; sample grids of the digits runs go to --output_dir, all numbers to
results.json there.
"""

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMPipeline

from benchmarks.common import (
    REPO_ROOT,
    SCORE_MODELS,
    argument_parser,
    digits_grid,
    markdown_table,
    real_digits,
    run_training_script,
)
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics, frechet_distance
from smart_hf.models import MLPNoisePredictor
from smart_hf.schedulers import (
    AnnealedLangevinScheduler,
    AnnealedScoreScheduler,
    ConsistentAnnealedSamplingScheduler,
)
from smart_hf.toy2d import ToyDataset, load_toy_dataset, toy_metrics

SCORE_TRAIN_SCRIPT = os.path.join(REPO_ROOT, "training", "train_score_model.py")
ALS_STEPS_PER_LEVEL = 5
# The grid25 recipe of the DSM-only / hybrid comparison: a smaller MLP than the shipped grid25-mlp.
GRID25_RECIPE = [
    "--dataset_name", "grid25", "--hidden_dim", "128", "--num_layers", "3", "--train_batch_size", "512",
    "--use_ema", "--checkpointing_steps", "0", "--logging_steps", "100", "--seed", "0",
]  # fmt: skip

# The recipe of the shipped digits-unet (its README), for the digits DSM-only / hybrid comparison.
DIGITS_RECIPE = [
    "--dataset_name", "digits", "--resolution", "8", "--channels", "1",
    "--block_out_channels", "32", "64", "64", "--layers_per_block", "1", "--norm_num_groups", "8",
    "--train_batch_size", "64", "--learning_rate", "1e-3",
    "--lr_scheduler", "cosine", "--lr_warmup_steps", "200", "--max_grad_norm", "1.0", "--use_ema",
    "--checkpointing_steps", "0", "--logging_steps", "100", "--num_sample_images", "16", "--seed", "0",
]  # fmt: skip

NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def samplers(nfe: int) -> dict[str, tuple[type[AnnealedScoreScheduler], dict, int]]:
    """name → (scheduler class, its options, levels), all at `nfe` evaluations before EDS."""
    als_levels = nfe // ALS_STEPS_PER_LEVEL
    return {
        "ALS (step 0.062·σ_L²)": (AnnealedLangevinScheduler, {}, als_levels),
        "ALS (step 0.5·σ_L²)": (AnnealedLangevinScheduler, {"step_ratio": 0.5}, als_levels),
        "CAS (default: η = 1 − γ²)": (ConsistentAnnealedSamplingScheduler, {}, nfe),
        "CAS (η = 1)": (ConsistentAnnealedSamplingScheduler, {"step_ratio": 1.0}, nfe),
    }


def build_scheduler(
    scheduler_class: type[AnnealedScoreScheduler], options: dict, sigma_max: float, sigma_min: float
) -> AnnealedScoreScheduler:
    kwargs = {"sigma_max": sigma_max, "sigma_min": sigma_min, "use_eds": True}
    if "step_ratio" in options:
        kwargs["step_size"] = options["step_ratio"] * sigma_min**2
    if scheduler_class is AnnealedLangevinScheduler:
        kwargs["steps_per_level"] = ALS_STEPS_PER_LEVEL
    return scheduler_class(**kwargs)


@torch.no_grad()
def sample_with_and_without_eds(
    predict_noise: NoisePredictor,
    scheduler: AnnealedScoreScheduler,
    shape: tuple[int, ...],
    num_levels: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's output before and after its final EDS step (a scheduler built with use_eds=True)."""
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(num_levels)
    sample = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        before_eds = sample
        eps = predict_noise(scheduler.scale_model_input(sample, t), t.expand(shape[0]))
        sample = scheduler.step(eps, t, sample, generator=generator).prev_sample
    return before_eds, sample


def exact_noise_predictor(dataset: ToyDataset, scheduler: AnnealedScoreScheduler) -> NoisePredictor:
    """eps_hat of the exact mixture at the scheduler's fractional timesteps (`GaussianMixtureScore` indexes
    its schedule by integers, so each call builds a one-step schedule at the interpolated alphā)."""
    log_sigmas = scheduler.model_sigmas.log()

    def predict(x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        t = timesteps[0].item()
        low = min(int(t), len(log_sigmas) - 2)
        sigma = torch.exp(torch.lerp(log_sigmas[low], log_sigmas[low + 1], t - low))
        score = dataset.analytic_score(alphas_cumprod=1 / (1 + sigma[None] ** 2))
        return score.predict_noise(x_t, torch.zeros(len(x_t), dtype=torch.long))

    return predict


def mlp_noise_predictor(folder: str) -> NoisePredictor:
    mlp = MLPNoisePredictor.from_pretrained(folder, subfolder="score_model").eval()
    return lambda x, t: mlp(x, t).sample


def unet_noise_predictor(unet) -> NoisePredictor:
    return lambda x, t: unet(x, t).sample


def to_images(samples: torch.Tensor) -> torch.Tensor:
    """Samples in [−1, 1] quantised to 8 bits, as saved images would be."""
    return ((samples.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def digits_benchmark(args: argparse.Namespace) -> list[dict]:
    models = {"shipped digits-unet (DSM)": os.path.join(SCORE_MODELS, "digits-unet")}
    if args.train_digits_steps:
        models.update(train_score_models(args, "digits", DIGITS_RECIPE, args.train_digits_steps, "unet"))
    extractor = DigitsFeatureExtractor()
    real = real_digits()
    reference = FeatureStatistics.from_features(extractor.extract(real))

    def fd(images: torch.Tensor) -> float:
        return frechet_distance(FeatureStatistics.from_features(extractor.extract(images)), reference)

    subset = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(args.seed))]
    real_fd = fd(subset[: args.num_samples])
    rows = [{"score": "—", "sampler": "real digits (subset of the reference)", "nfe": 0, "fd": real_fd}]
    shape = (args.num_samples, 1, 8, 8)
    for score_name, folder in models.items():
        start = time.time()
        pipeline = DDPMPipeline.from_pretrained(folder)
        pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(args.seed)
        ddim = pipeline(
            batch_size=args.num_samples, generator=generator, num_inference_steps=args.nfe, output_type="pt"
        ).images
        seconds = time.time() - start
        row = {"score": score_name, "sampler": "DDIM (η = 0)", "nfe": args.nfe, "seconds": seconds}
        rows.append({**row, "fd": fd(to_images(ddim * 2 - 1))})
        print(rows[-1], flush=True)
        predict_noise = unet_noise_predictor(pipeline.unet.eval())
        for name, (scheduler_class, options, levels) in samplers(args.nfe).items():
            start = time.time()
            scheduler = build_scheduler(scheduler_class, options, args.digits_sigma_max, args.sigma_min)
            plain, eds = sample_with_and_without_eds(predict_noise, scheduler, shape, levels, args.seed)
            seconds = time.time() - start
            nfe = len(scheduler.timesteps) - 1
            for label, samples, extra in ((name, plain, 0), (f"{name} + EDS", eds, 1)):
                images = to_images(samples)
                row = {"score": score_name, "sampler": label, "nfe": nfe + extra, "seconds": seconds}
                rows.append({**row, "fd": fd(images)})
                slug = re.sub(r"[^a-z0-9]+", "_", f"{score_name} {label}".lower()).strip("_")
                digits_grid(images).save(os.path.join(args.output_dir, f"digits_{slug}.png"))
                print(rows[-1], flush=True)
    return rows


def train_score_models(
    args: argparse.Namespace, dataset: str, recipe: list[str], steps: int, model_folder: str
) -> dict[str, str]:
    """A DSM-only score model and a hybrid one per adversarial weight, trained with the same recipe
    (once: an existing output folder is reused)."""
    runs = {"DSM only": (f"{dataset}-dsm", [])}
    for weight in args.adversarial_weights:
        flags = ["--adversarial", "--adversarial_weight", f"{weight:g}"]
        runs[f"hybrid, λ_adv = {weight:g}"] = (f"{dataset}-hybrid-w{weight:g}", flags)
    folders = {}
    for name, (folder, flags) in runs.items():
        folder = os.path.join(args.output_dir, f"{folder}-{steps}")
        if not os.path.isdir(os.path.join(folder, model_folder)):
            command = [SCORE_TRAIN_SCRIPT, *recipe, *flags, "--output_dir", folder]
            command += ["--max_train_steps", str(steps)]
            print("Training:", " ".join([sys.executable, *command]), flush=True)
            run_training_script(command)
        folders[f"{name}, {steps} steps"] = folder
    return folders


def grid25_benchmark(args: argparse.Namespace) -> list[dict]:
    dataset = load_toy_dataset("grid25")
    models = {"shipped grid25-mlp (DSM)": os.path.join(SCORE_MODELS, "grid25-mlp")}
    if args.train_grid25_steps:
        models.update(
            train_score_models(args, "grid25", GRID25_RECIPE, args.train_grid25_steps, "score_model")
        )
    predictors = {"exact score": None, **{name: mlp_noise_predictor(path) for name, path in models.items()}}
    rows = []
    for score_name, predictor in predictors.items():
        for name, (scheduler_class, options, levels) in samplers(args.nfe).items():
            scheduler = build_scheduler(scheduler_class, options, args.grid25_sigma_max, args.sigma_min)
            predict = predictor or exact_noise_predictor(dataset, scheduler)
            plain, eds = sample_with_and_without_eds(
                predict, scheduler, (args.toy_samples, 2), levels, args.seed
            )
            nfe = len(scheduler.timesteps) - 1
            for label, samples, extra in ((name, plain, 0), (f"{name} + EDS", eds, 1)):
                metrics = toy_metrics(samples, dataset, seed=args.seed)
                rows.append({"score": score_name, "sampler": label, "nfe": nfe + extra, **metrics})
                print(rows[-1], flush=True)
    return rows


def print_tables(digits_rows: list[dict], grid25_rows: list[dict], args: argparse.Namespace) -> None:
    if digits_rows:
        print(f"\n### digits-unet, {args.num_samples} samples, FD_digits (lower is better)\n")
        table = [[row["score"], row["sampler"], row["nfe"], f"{row['fd']:.2f}"] for row in digits_rows]
        print(markdown_table(["score", "sampler", "NFE", "FD_digits"], table))
    if grid25_rows:
        print(f"\n### grid25, {args.toy_samples} samples\n")
        table = [
            [
                row["score"],
                row["sampler"],
                row["nfe"],
                f"{row['modes_covered']}/{row['num_modes']}",
                f"{row['high_quality_percent']:.1f}",
                f"{row['sliced_wasserstein']:.3f}",
            ]
            for row in grid25_rows
        ]
        print(markdown_table(["score", "sampler", "NFE", "modes", "within 3 std %", "sliced W1"], table))


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--num_samples", type=int, default=500, help="Digits samples per sampler.")
    parser.add_argument("--toy_samples", type=int, default=2500, help="grid25 samples per sampler.")
    parser.add_argument("--nfe", type=int, default=100, help="Network evaluations per sample, before EDS.")
    parser.add_argument("--digits_sigma_max", type=float, default=10.0)
    parser.add_argument("--grid25_sigma_max", type=float, default=12.0)
    parser.add_argument("--sigma_min", type=float, default=0.01)
    parser.add_argument("--train_grid25_steps", type=int, default=0, help="0: no DSM/hybrid comparison.")
    parser.add_argument("--train_digits_steps", type=int, default=0, help="0: no DSM/hybrid comparison.")
    parser.add_argument(
        "--adversarial_weights", type=float, nargs="+", default=[1.0], help="One hybrid model per weight."
    )
    parser.add_argument("--parts", nargs="+", choices=["grid25", "digits"], default=["grid25", "digits"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="outputs/benchmarks/sampling")
    args = parser.parse_args()
    if args.nfe % ALS_STEPS_PER_LEVEL:
        raise ValueError(f"--nfe must be a multiple of {ALS_STEPS_PER_LEVEL} (ALS's steps per level).")
    os.makedirs(args.output_dir, exist_ok=True)

    start, load_before = time.time(), os.getloadavg()
    grid25_rows = grid25_benchmark(args) if "grid25" in args.parts else []
    digits_rows = digits_benchmark(args) if "digits" in args.parts else []
    print_tables(digits_rows, grid25_rows, args)
    machine = {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.time() - start,
    }
    print(f"\nMachine: {json.dumps(machine)}")
    results = {"args": vars(args), "machine": machine, "digits": digits_rows, "grid25": grid25_rows}
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=float)


if __name__ == "__main__":
    main()
