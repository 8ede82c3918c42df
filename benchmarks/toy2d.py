"""Toy 2-D benchmark: plain GAN vs GAN + SMaRt (analytic score) vs GAN + SMaRt (learned score).

Every method trains with `training/train_smart_gan.py` at the same step budget and seeds, and is scored on
2,500 samples: modes covered, % high-quality samples (within 3 std of the nearest mode) and the sliced
Wasserstein distance to fresh data. Prints a markdown table and writes a side-by-side scatter figure.

    python -m benchmarks.toy2d                      # grid25, 3 seeds, the toy recipe below
    python -m benchmarks.toy2d --jobs 2             # two runs at a time, one thread each
    python -m benchmarks.toy2d --seeds 0 1 2 3 4 --extra_args "--max_train_steps 8000"
    python -m benchmarks.toy2d --methods analytic learned   # skip the plain GAN (its runs do not depend on t)

Every run starts from the toy preset `training/configs/grid25.yaml` (the best recipe found on grid25 at about
a minute per run on a 2-core CPU, see the README): a 2-D-latent MLP generator with Fourier features of its
latent and BatchNorm (frozen for the second half), Adam(0.5, 0.999) with a warmup-stable-decay learning rate,
and SMaRt in its `sds` form (4 noise draws per sample) ramped in over the second half.
The methods differ only in `--smart_weight 0` (the plain GAN) and `--score`.
"""

import argparse
import os
import shlex

import numpy as np

from benchmarks.common import (
    CONFIGS,
    SCORE_MODELS,
    argument_parser,
    point_drawer,
    run_jobs,
    save_panels,
    toy_table,
    train_in_subprocess,
    true_samples,
)
from smart_hf.toy2d import load_toy_dataset, toy_metrics

PRESET = os.path.join(CONFIGS, "grid25.yaml")
LEARNED_SCORES = {"grid25": os.path.join(SCORE_MODELS, "grid25-mlp")}
METHOD_NAMES = {
    "gan": "GAN",
    "analytic": "GAN + SMaRt (analytic score)",
    "learned": "GAN + SMaRt (learned score)",
}


def methods(dataset_name: str, chosen: list[str] | None = None) -> dict[str, list[str]]:
    """Display name -> the flags that make the method, for the `chosen` ids (None: all the data set has)."""
    flags = {"gan": ["--smart_weight", "0"], "analytic": ["--score", "analytic"]}
    if dataset_name in LEARNED_SCORES:
        flags["learned"] = ["--score", LEARNED_SCORES[dataset_name]]
    return {METHOD_NAMES[key]: value for key, value in flags.items() if chosen is None or key in chosen}


def run_dir(output_root: str, name: str, seed: int) -> str:
    """A method's run folder: "GAN", or the score in its name ("analytic_score"), then the seed."""
    return os.path.join(output_root, name.split("(")[-1].strip(")").replace(" ", "_"), str(seed))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset_name", default="grid25")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--extra_args",
        default="",
        help="Flags passed to every training run, before each method's own flags: a --smart_weight here sets "
        "the SMaRt methods' lambda, and the plain GAN keeps 0.",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=sorted(METHOD_NAMES),
        help="Which methods to train (default: every one the data set has; 'learned' needs a shipped score).",
    )
    parser.add_argument("--output_dir", default="outputs/benchmarks/toy2d")
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time; > 1 gives each run one thread.")
    args = parser.parse_args(argv)
    if any(flag.split("=")[0] == "--score" for flag in shlex.split(args.extra_args)):
        parser.error(
            "--extra_args must not set --score: the methods differ by their score (analytic, learned). "
            "To try another score model, train with training/train_smart_gan.py --score <path>."
        )
    if args.methods and "learned" in args.methods and args.dataset_name not in LEARNED_SCORES:
        parser.error(f"No learned score is shipped for {args.dataset_name}: drop 'learned' from --methods.")
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    """Trains every method on every seed and prints the table; returns each method's per-seed metrics."""
    args = parse_args(argv)
    selected = methods(args.dataset_name, args.methods)

    dataset = load_toy_dataset(args.dataset_name)
    reference = true_samples(dataset)
    rows = {"true data": [toy_metrics(reference, dataset)]}
    scatter = {"true data": reference.numpy()}
    runs = [(name, seed) for name in selected for seed in args.seeds]
    folders = {run: run_dir(args.output_dir, *run) for run in runs}

    def train(run: tuple[str, int]) -> dict:
        name, seed = run
        flags = ["--config", PRESET, "--dataset_name", args.dataset_name, "--seed", str(seed)]
        flags += [*shlex.split(args.extra_args), *selected[name]]  # the method's flags win
        return train_in_subprocess(flags, folders[run], single_thread=args.jobs > 1)

    for (name, seed), metrics in zip(runs, run_jobs(train, runs, args.jobs), strict=True):
        print(
            f"{name} seed {seed}: {metrics['modes_covered']}/{metrics['num_modes']} modes, "
            f"{metrics['high_quality_percent']:.1f}% HQ, {metrics['wall_seconds']:.0f} s",
            flush=True,
        )
        rows.setdefault(name, []).append(metrics)
        if seed == args.seeds[0]:
            scatter[name] = np.load(os.path.join(folders[name, seed], "samples.npy"))

    print(f"\n{args.dataset_name}, seeds {args.seeds}, extra args: {args.extra_args or '(none)'}\n")
    print(toy_table(rows))
    figure_path = os.path.join(args.output_dir, f"{args.dataset_name}_samples.png")
    save_panels(scatter, point_drawer(dataset), figure_path, (4, 4.2))
    print(f"\nFigure: {figure_path}")
    return rows


if __name__ == "__main__":
    main()
