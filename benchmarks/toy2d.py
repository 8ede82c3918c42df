"""Toy 2-D benchmark: plain GAN vs GAN + SMaRt (analytic score) vs GAN + SMaRt (learned score).

Every method trains with `training/train_smart_gan.py` at the same step budget and seeds, and is scored on
2,500 samples: modes covered, % high-quality samples (within 3 std of the nearest mode) and the sliced
Wasserstein distance to fresh data. Prints a markdown table and writes a side-by-side scatter figure.

    python benchmarks/toy2d.py                      # grid25, 3 seeds, the toy recipe below
    python benchmarks/toy2d.py --jobs 2             # two runs at a time, one thread each
    python benchmarks/toy2d.py --seeds 0 1 2 3 4 --extra_args "--max_train_steps 8000"
    python benchmarks/toy2d.py --methods analytic learned   # skip the plain GAN (its runs do not depend on t)

Every run starts from the toy preset `training/configs/grid25.yaml` (the best recipe found on grid25 at about
a minute per run on a 2-core CPU, see the README): a 2-D-latent MLP generator with Fourier features of its
latent and BatchNorm (frozen for the second half), Adam(0.5, 0.999) with a warmup-stable-decay learning rate,
and SMaRt in its `sds` form (4 noise draws per sample) ramped in over the second half.
The methods differ only in `--smart_weight 0` (the plain GAN) and `--score`.
"""

import argparse
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from smart_hf.toy2d import load_toy_dataset, toy_metrics  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO_ROOT, "training", "train_smart_gan.py")
PRESET = os.path.join(REPO_ROOT, "training", "configs", "grid25.yaml")
LEARNED_SCORES = {
    "grid25": os.path.join(REPO_ROOT, "src", "smart_hf", "assets", "score_models", "grid25-mlp")
}


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


def run_training(flags: list[str], output_dir: str, single_thread: bool) -> dict:
    """One training run in a fresh process; returns its metrics.json plus the wall time."""
    command = [sys.executable, TRAIN_SCRIPT, *flags, "--output_dir", output_dir]
    env = {**os.environ, "TQDM_DISABLE": "1", **({"OMP_NUM_THREADS": "1"} if single_thread else {})}
    start = time.time()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Training failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return {**json.load(f), "wall_seconds": time.time() - start}


def mean_std(values: list[float], fmt: str) -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    true_samples = dataset.sample(2500, generator=torch.Generator().manual_seed(123))
    rows = [("true data", [toy_metrics(true_samples, dataset)])]
    scatter = {"true data": true_samples.numpy()}
    runs = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for name, flags in selected.items():
            for seed in args.seeds:
                output_dir = os.path.join(
                    args.output_dir, name.split("(")[-1].strip(")").replace(" ", "_"), str(seed)
                )
                run_flags = ["--config", PRESET, "--dataset_name", args.dataset_name, "--seed", str(seed)]
                run_flags += [*shlex.split(args.extra_args), *flags]  # the method's flags win
                future = pool.submit(run_training, run_flags, output_dir, args.jobs > 1)
                runs[name, seed] = (future, output_dir)
        for name in selected:
            results = []
            for seed in args.seeds:
                future, output_dir = runs[name, seed]
                metrics = future.result()
                results.append(metrics)
                print(
                    f"{name} seed {seed}: {metrics['modes_covered']}/{metrics['num_modes']} modes, "
                    f"{metrics['high_quality_percent']:.1f}% HQ, {metrics['wall_seconds']:.0f} s",
                    flush=True,
                )
                if seed == args.seeds[0]:
                    scatter[name] = np.load(os.path.join(output_dir, "samples.npy"))
            rows.append((name, results))

    print(f"\n{args.dataset_name}, seeds {args.seeds}, extra args: {args.extra_args or '(none)'}\n")
    print("| method | modes covered | high-quality % | sliced W1 | per-seed modes | wall time per run (s) |")
    print("|---|---|---|---|---|---|")
    for name, results in rows:
        modes = [r["modes_covered"] for r in results]
        wall = mean_std([r["wall_seconds"] for r in results], ".0f") if "wall_seconds" in results[0] else "—"
        print(
            f"| {name} | {mean_std(modes, '.1f')} / {results[0]['num_modes']} "
            f"| {mean_std([r['high_quality_percent'] for r in results], '.1f')} "
            f"| {mean_std([r['sliced_wasserstein'] for r in results], '.3f')} "
            f"| {', '.join(map(str, modes))} | {wall} |"
        )

    fig, axes = plt.subplots(1, len(scatter), figsize=(4 * len(scatter), 4.2))
    limit = float(dataset.means.abs().max()) * 1.4
    for ax, (name, points) in zip(axes, scatter.items(), strict=True):
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=name, xticks=[], yticks=[])
    figure_path = os.path.join(args.output_dir, f"{args.dataset_name}_samples.png")
    fig.savefig(figure_path, dpi=110, bbox_inches="tight")
    print(f"\nFigure: {figure_path}")
    return dict(rows)


if __name__ == "__main__":
    main()
