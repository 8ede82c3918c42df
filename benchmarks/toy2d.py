"""Toy 2-D benchmark: plain GAN vs GAN + SMaRt (analytic score) vs GAN + SMaRt (learned score).

Every method trains with `training/train_smart_gan.py` at the same step budget and seeds, and is scored on
2,500 samples: modes covered, % high-quality samples (within 3 std of the nearest mode) and the sliced
Wasserstein distance to fresh data. Prints a markdown table and writes a side-by-side scatter figure.

    python benchmarks/toy2d.py                      # grid25, 3 seeds, the default recipe
    python benchmarks/toy2d.py --seeds 0 1 2 3 4 --extra_args "--max_train_steps 8000"
"""

import argparse
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
LEARNED_SCORES = {
    "grid25": os.path.join(REPO_ROOT, "src", "smart_hf", "assets", "score_models", "grid25-mlp")
}


def methods(dataset_name: str) -> dict[str, list[str]]:
    runs = {"GAN": ["--smart_weight", "0"], "GAN + SMaRt (analytic score)": ["--score", "analytic"]}
    if dataset_name in LEARNED_SCORES:
        runs["GAN + SMaRt (learned score)"] = ["--score", LEARNED_SCORES[dataset_name]]
    return runs


def run_training(flags: list[str], output_dir: str) -> dict:
    command = [sys.executable, TRAIN_SCRIPT, *flags, "--output_dir", output_dir]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return json.load(f)


def mean_std(values: list[float], fmt: str) -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset_name", default="grid25")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra_args", default="", help="Flags passed to every training run.")
    parser.add_argument("--output_dir", default="outputs/benchmarks/toy2d")
    args = parser.parse_args()

    dataset = load_toy_dataset(args.dataset_name)
    true_samples = dataset.sample(2500, generator=torch.Generator().manual_seed(123))
    rows = [("true data", [toy_metrics(true_samples, dataset)], None)]
    scatter = {"true data": true_samples.numpy()}
    for name, flags in methods(args.dataset_name).items():
        results = []
        for seed in args.seeds:
            output_dir = os.path.join(
                args.output_dir, name.replace(" ", "_").replace("(", "").replace(")", ""), str(seed)
            )
            run_flags = [
                "--dataset_name",
                args.dataset_name,
                "--seed",
                str(seed),
                *flags,
                *shlex.split(args.extra_args),
            ]
            start = time.time()
            metrics = run_training(run_flags, output_dir)
            metrics["wall_seconds"] = time.time() - start
            results.append(metrics)
            print(
                f"{name} seed {seed}: {metrics['modes_covered']}/{metrics['num_modes']} modes, "
                f"{metrics['high_quality_percent']:.1f}% HQ, {metrics['wall_seconds']:.0f} s",
                flush=True,
            )
            if seed == args.seeds[0]:
                scatter[name] = np.load(os.path.join(output_dir, "samples.npy"))
        rows.append((name, results, flags))

    print(f"\n{args.dataset_name}, seeds {args.seeds}, extra args: {args.extra_args or '(none)'}\n")
    print("| method | modes covered | high-quality % | sliced W1 | per-seed modes | wall time per run (s) |")
    print("|---|---|---|---|---|---|")
    for name, results, _ in rows:
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


if __name__ == "__main__":
    main()
