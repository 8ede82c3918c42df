"""Ablations: each data-efficient discriminator technique and TTUR, alone and combined with SMaRt.

The techniques are options of training/train_smart_gan.py (README, "Data-efficient discriminator techniques"
and "More training options"): the plain GAN, Diffusion-GAN (--diffusion_gan), NICE (--nice), MaskedGAN
(--masked_gan both, images only), NATS (--nats) and TTUR (training/configs/ttur.yaml). Each trains alone
(--smart_weight 0) and with SMaRt, at the same step budget and seeds:

- grid25: GRID25_RECIPE below, the toy recipe of the time (its SMaRt: `sds`, lambda 0.01 on every step, the
  exact score), judged on 2,500 samples by the toy metrics: modes covered, % high-quality samples, sliced
  Wasserstein.
- digits, small-data regime: the digits preset (training/configs/digits.yaml; its SMaRt: `full` on every
  step, the shipped digits-unet, at the lambda and t range of the time: 0.3 and [25, 35]) trained on 10% of
  the digits (--max_train_samples 180, drawn with the run's seed), where the discriminator overfits. Each
  generator draws --num_samples images, judged as in benchmarks/digits.py: FD_digits against all 1,797
  digits, and the digits covered.

Every technique keeps its defaults, except Diffusion-GAN's noise scale on grid25 (0.2 rather than 0.05: the
toy points span ±4, four times the images' [−1, 1]). TTUR sets the paper's learning rates and Adam betas
(G 1e-4, D 3e-4, Adam(0, 0.9)) over the base recipe's (grid25: 5e-4 for both with Adam(0, 0.99); digits:
G 2e-4, D 4e-4 with Adam(0, 0.9)).

Runs go one after another in this process (--jobs 1), or --jobs at a time in worker processes of one thread
each. Prints markdown tables, writes results.json and one figure per part (scatters, sample grids).

    OMP_NUM_THREADS=1 python -m benchmarks.ablations --jobs 1  # the defaults: 51 min on a shared 2-core CPU
    python -m benchmarks.ablations --parts digits --seeds 0 1 2 --steps 1500
    python -m benchmarks.ablations --techniques plain nice nats --jobs 2
"""

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.common import (
    CONFIGS,
    argument_parser,
    draw_digits,
    judge_digits,
    markdown_table,
    mean_std,
    point_drawer,
    real_digits,
    sample_images,
    toy_table,
    train_in_process,
    true_samples,
)
from smart_hf.data import DIGITS, load_image_dataset
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics
from smart_hf.evaluation.images import dataset_images
from smart_hf.toy2d import load_toy_dataset, toy_metrics
from smart_hf.training.config import config_arguments, gan_parser

DIGITS_PRESET = os.path.join(CONFIGS, "digits.yaml")
TTUR_CONFIG = os.path.join(CONFIGS, "ttur.yaml")
TECHNIQUES = {  # name: (label, flags); TTUR's flags are those of TTUR_CONFIG
    "plain": ("GAN", []),
    "diffusion_gan": ("Diffusion-GAN", ["--diffusion_gan"]),
    "nice": ("NICE", ["--nice"]),
    "masked_gan": ("MaskedGAN (both)", ["--masked_gan", "both"]),
    "nats": ("NATS", ["--nats"]),
    "ttur": ("TTUR", []),
}
IMAGES_ONLY = {"masked_gan"}
GRID25_FLAGS = {"diffusion_gan": ["--diffusion_gan_sigma", "0.2"]}
DEFAULT_STEPS = {"grid25": 1500, "digits": 600}
DEFAULT_SEEDS = {"grid25": [0, 1, 2], "digits": [0]}
NUM_DIGITS = 1797
DIGITS_TRAIN_SAMPLES = 180  # 10% of the digits


@dataclass(frozen=True)
class Method:
    technique: str
    smart: bool

    @property
    def label(self) -> str:
        return TECHNIQUES[self.technique][0] + (" + SMaRt" if self.smart else "")

    @property
    def folder(self) -> str:
        return self.technique + ("_smart" if self.smart else "")


@dataclass(frozen=True)
class Run:
    part: str
    method: Method
    seed: int
    output_dir: str


# The recipes the README's ablation tables were measured with (the presets have moved on since: grid25.yaml
# and digits.yaml's lambda and t range); pinned here so the command keeps reproducing its tables.
GRID25_RECIPE = [
    "--hidden_dim", "128", "--train_batch_size", "256", "--max_train_steps", "4000",
    "--r1_gamma", "0.1", "--r1_interval", "4", "--adam_beta1", "0", "--adam_beta2", "0.99",
    "--g_learning_rate", "5e-4", "--d_learning_rate", "5e-4",
    "--smart_gradient", "sds", "--smart_weight", "0.01", "--smart_interval", "1",
    "--smart_t_min", "25", "--smart_t_max", "35",
]  # fmt: skip
DIGITS_SMART_RECIPE = ["--smart_weight", "0.3", "--smart_t_min", "25", "--smart_t_max", "35"]


def methods(part: str, techniques: list[str]) -> list[Method]:
    """Each technique that applies to `part`, alone then with SMaRt."""
    usable = [name for name in techniques if part == "digits" or name not in IMAGES_ONLY]
    return [Method(name, smart) for name in usable for smart in (False, True)]


def training_argv(run: Run, args: argparse.Namespace) -> list[str]:
    """The train_smart_gan.py flags of one run: the part's recipe, then the technique's flags (they override
    the recipe), SMaRt off or as the recipe sets it, the seed and budget, then --extra_args."""
    if run.part == "grid25":
        base = [*GRID25_RECIPE, "--dataset_name", "grid25"]
    else:
        base = ["--config", DIGITS_PRESET, *DIGITS_SMART_RECIPE, "--save_images_steps", "0"]
        base += ["--max_train_samples", str(args.digits_train_samples)]
    technique = TECHNIQUES[run.method.technique][1]
    if run.method.technique == "ttur":
        technique = config_arguments(TTUR_CONFIG, gan_parser())
    if run.part == "grid25":
        technique = technique + GRID25_FLAGS.get(run.method.technique, [])
    return [
        *base,
        *technique,
        *([] if run.method.smart else ["--smart_weight", "0"]),
        *("--seed", str(run.seed), "--max_train_steps", str(steps(run.part, args))),
        *("--checkpointing_steps", "0"),
        *shlex.split(args.extra_args),
        *("--output_dir", run.output_dir),
    ]


def steps(part: str, args: argparse.Namespace) -> int:
    return args.steps or DEFAULT_STEPS[part]


def seeds(part: str, args: argparse.Namespace) -> list[int]:
    return args.seeds or DEFAULT_SEEDS[part]


def run_all(argvs: list[list[str]], jobs: int) -> Iterator[dict]:
    """The runs' results in order: in turn here, or `jobs` at a time in forked one-thread workers."""
    if jobs == 1:
        yield from map(train_in_process, argvs)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield from pool.map(train_in_process, argvs)


def by_method(runs: list[tuple[Run, dict]]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for run, result in runs:
        grouped.setdefault(run.method.label, []).append(result)
    return grouped


def grid25_report(runs: list[tuple[Run, dict]], args: argparse.Namespace) -> dict:
    """The toy table and scatters; the true data's row is 2,500 fresh samples."""
    dataset = load_toy_dataset("grid25")
    reference = true_samples(dataset)
    rows = {"true data": [toy_metrics(reference, dataset)], **by_method(runs)}
    print(
        f"\ngrid25: {steps('grid25', args)} generator steps, seeds {seeds('grid25', args)}, the recipe of "
        f"benchmarks/toy2d.py; 2,500 samples per run; extra args: {args.extra_args or '(none)'}\n"
    )
    print(toy_table(rows))
    panels = {"true data": reference.numpy()}
    for run, _ in first_seed(runs):
        panels[run.method] = np.load(os.path.join(run.output_dir, "samples.npy"))
    save_figure(panels, point_drawer(dataset), os.path.join(args.output_dir, "ablations_grid25.png"))
    return {"steps": steps("grid25", args), "seeds": seeds("grid25", args), "rows": rows}


def digits_report(runs: list[tuple[Run, dict]], args: argparse.Namespace) -> dict:
    """Samples of every digits run judged against all 1,797 digits; the training subset as a reference row."""
    extractor = DigitsFeatureExtractor()
    reference = FeatureStatistics.from_features(extractor.extract(real_digits()))
    first = seeds("digits", args)[0]
    training = load_image_dataset(DIGITS).subset(args.digits_train_samples, first)
    training_images = torch.cat(list(dataset_images(training)))
    training_label = f"training subset: {len(training)} real digits (seed {first})"
    judged = [(training_label, training_images, None)]
    for run, result in runs:
        images = sample_images(run.output_dir, args.num_samples, run.seed)
        judged.append((run.method.label, images, result))
    rows: dict[str, list[dict]] = {}
    for label, images, result in judged:
        verdict = judge_digits(extractor, images, reference)
        rows.setdefault(label, []).append(
            {**(result or {}), **verdict, "histogram": verdict["histogram"].tolist()}
        )
    table = []
    for label, results in rows.items():
        distances = [result["fd"] for result in results]
        wall = [result["wall_seconds"] for result in results if "wall_seconds" in result]
        table.append(
            [
                label,
                mean_std(distances, ".2f"),
                ", ".join(f"{fd:.2f}" for fd in distances),
                mean_std([result["covered"] for result in results], ".1f"),
                mean_std(wall, ".0f") if wall else "—",
            ]
        )
    print(
        f"\ndigits, small data: {len(training)} of the 1,797 digits, {steps('digits', args)} generator "
        f"steps, seeds {seeds('digits', args)}, the digits preset; {args.num_samples} samples per run, "
        f"FD_digits against all 1,797 digits; extra args: {args.extra_args or '(none)'}\n"
    )
    print(
        markdown_table(["method", "FD_digits", "per seed", "digits covered", "wall time per run (s)"], table)
    )
    panels = {training_label: training_images[:64]}
    for run, _ in first_seed(runs):
        panels[run.method] = sample_images(run.output_dir, 64, run.seed)
    save_figure(panels, draw_digits, os.path.join(args.output_dir, "ablations_digits.png"))
    return {
        "steps": steps("digits", args),
        "seeds": seeds("digits", args),
        "train_samples": len(training),
        "rows": rows,
    }


def first_seed(runs: list[tuple[Run, dict]]) -> list[tuple[Run, dict]]:
    """The runs of the first seed (runs are ordered by method, then seed)."""
    return [(run, result) for run, result in runs if run.seed == runs[0][0].seed]


def save_figure(panels: dict, draw: Callable, path: str) -> None:
    """The reference panel (the first), then a column per technique: alone on top, with SMaRt below."""
    reference, *trained = panels
    techniques = list(dict.fromkeys(method.technique for method in trained))
    fig, axes = plt.subplots(
        2, len(techniques) + 1, figsize=(2.6 * (len(techniques) + 1), 5.6), squeeze=False
    )
    draw(axes[0, 0], panels[reference])
    axes[0, 0].set_title(reference, fontsize=8)
    axes[1, 0].axis("off")
    for column, technique in enumerate(techniques, start=1):
        for row, smart in enumerate((False, True)):
            method = Method(technique, smart)
            if method in panels:
                draw(axes[row, column], panels[method])
                axes[row, column].set_title(method.label, fontsize=8)
            else:
                axes[row, column].axis("off")
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"\nFigure: {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--parts", nargs="+", choices=list(DEFAULT_STEPS), default=list(DEFAULT_STEPS))
    parser.add_argument("--techniques", nargs="+", choices=list(TECHNIQUES), default=list(TECHNIQUES))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"Default: {DEFAULT_SEEDS}.")
    parser.add_argument("--steps", type=int, default=None, help=f"Generator steps; default: {DEFAULT_STEPS}.")
    parser.add_argument(
        "--digits_train_samples",
        type=int,
        default=DIGITS_TRAIN_SAMPLES,
        help="Training digits (--max_train_samples); 180 is 10%% of the 1,797.",
    )
    parser.add_argument("--num_samples", type=int, default=2000, help="Generated digits judged per run.")
    parser.add_argument("--extra_args", default="", help="Flags for every training run, placed last.")
    parser.add_argument("--output_dir", default="outputs/benchmarks/ablations")
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time; above 1, one thread each.")
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.steps is not None and args.steps < 1) or args.num_samples < 2:
        parser.error("--jobs and --steps must be >= 1 and --num_samples >= 2.")
    if not 1 <= args.digits_train_samples <= NUM_DIGITS:
        parser.error(f"--digits_train_samples must lie in 1..{NUM_DIGITS}, got {args.digits_train_samples}.")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.time()
    runs = [
        Run(part, method, seed, os.path.join(args.output_dir, part, method.folder, str(seed)))
        for part in args.parts
        for method in methods(part, args.techniques)
        for seed in seeds(part, args)
    ]
    argvs = [training_argv(run, args) for run in runs]
    trained = []
    for run, run_argv, result in zip(runs, argvs, run_all(argvs, args.jobs), strict=True):
        seconds = result["wall_seconds"]
        print(f"trained {run.part} {run.method.label} seed {run.seed} in {seconds:.0f} s", flush=True)
        result.pop("config", None)  # the argv holds the settings
        trained.append((run, {"seed": run.seed, "argv": run_argv, **result}))

    report = {
        "command": shlex.join(
            ["python", "-m", "benchmarks.ablations", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s)",
        "jobs": args.jobs,
        "parts": {},
    }
    for part in args.parts:
        build = grid25_report if part == "grid25" else digits_report
        report["parts"][part] = build([(run, result) for run, result in trained if run.part == part], args)
    report["wall_seconds"] = time.time() - start
    os.makedirs(args.output_dir, exist_ok=True)
    seconds, machine = report["wall_seconds"], report["machine"]
    print(f"\nTotal wall time: {seconds:.0f} s ({machine}, {args.jobs} run(s) at a time)")
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
