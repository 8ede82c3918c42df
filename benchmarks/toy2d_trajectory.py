"""Modes covered and % high-quality samples at every checkpoint of finished toy runs.

The toy benchmark scores only the final generator; this shows when each run found its modes and sharpened,
e.g. how many modes the GAN holds when SMaRt's lambda starts to rise. Each checkpoint's generator (its EMA
copy when the run used one) is scored like the final one: the run's `--num_eval_samples` latents drawn from
its seed, the metrics of `smart_hf.toy2d.toy_metrics`.

    python -m benchmarks.toy2d_trajectory outputs/benchmarks/toy2d/grid25/{GAN,analytic_score}/2
"""

import argparse
import os
import re

import torch

from benchmarks.common import argument_parser, eval_latents, markdown_table, read_metrics
from smart_hf.models.toy_mlp import ToyGenerator
from smart_hf.toy2d import load_toy_dataset, toy_metrics

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("run_dirs", nargs="+", help="Output folders of finished train_smart_gan.py toy runs.")
    return parser.parse_args(argv)


def checkpoint_steps(run_dir: str) -> list[int]:
    steps = sorted(int(m.group(1)) for name in os.listdir(run_dir) if (m := CHECKPOINT_PATTERN.match(name)))
    if not steps:
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint-<step> folders: train it with --checkpointing_steps."
        )
    return steps


def trajectory(run_dir: str) -> dict[int, dict[str, float]]:
    """{step: toy metrics} for every checkpoint of one run."""
    config = read_metrics(run_dir)["config"]
    dataset = load_toy_dataset(config["dataset_name"])
    latents = eval_latents(config)
    folder = "generator_ema" if config.get("use_ema") else "generator"
    metrics = {}
    for step in checkpoint_steps(run_dir):
        generator = ToyGenerator.from_pretrained(os.path.join(run_dir, f"checkpoint-{step}", folder)).eval()
        with torch.no_grad():
            metrics[step] = toy_metrics(generator(latents), dataset, seed=config["seed"])
    return metrics


def main(argv: list[str] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    args = parse_args(argv)
    results = {run_dir: trajectory(run_dir) for run_dir in args.run_dirs}
    steps = sorted({step for metrics in results.values() for step in metrics})
    table = []
    for run_dir, metrics in results.items():
        cells = [
            f"{metrics[step]['modes_covered']} / {metrics[step]['high_quality_percent']:.1f}"
            if step in metrics
            else "—"
            for step in steps
        ]
        table.append([run_dir, *cells])
    print("modes covered / high-quality % at each checkpoint\n")
    print(markdown_table(["run", *(f"step {step}" for step in steps)], table))
    return results


if __name__ == "__main__":
    main()
