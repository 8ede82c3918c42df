"""Modes covered and % high-quality samples at every checkpoint of finished toy runs.

The toy benchmark scores only the final generator; this shows when each run found its modes and sharpened,
e.g. how many modes the GAN holds when SMaRt's lambda starts to rise. Each checkpoint's generator (its EMA
copy when the run used one) is scored like the final one: the run's `--num_eval_samples` latents drawn from
its seed, the metrics of `smart_hf.toy2d.toy_metrics`.

    python benchmarks/toy2d_trajectory.py outputs/benchmarks/toy2d/{GAN,analytic_score}/2
"""

import argparse
import json
import os
import re

import torch

from smart_hf.models.toy_mlp import ToyGenerator
from smart_hf.toy2d import load_toy_dataset, toy_metrics

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", help="Output folders of finished train_smart_gan.py toy runs.")
    return parser.parse_args(argv)


def run_config(run_dir: str) -> dict:
    """The training flags a finished toy run saved in its metrics.json."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: pass the output folder of a finished toy run of training/train_smart_gan.py."
        )
    with open(path) as f:
        return json.load(f)["config"]


def checkpoint_steps(run_dir: str) -> list[int]:
    steps = sorted(int(m.group(1)) for name in os.listdir(run_dir) if (m := CHECKPOINT_PATTERN.match(name)))
    if not steps:
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint-<step> folders: train it with --checkpointing_steps."
        )
    return steps


def trajectory(run_dir: str) -> dict[int, dict[str, float]]:
    """{step: toy metrics} for every checkpoint of one run."""
    config = run_config(run_dir)
    dataset = load_toy_dataset(config["dataset_name"])
    seeded = torch.Generator().manual_seed(config["seed"])
    latents = torch.randn(config["num_eval_samples"], config["latent_dim"], generator=seeded)
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
    print("modes covered / high-quality % at each checkpoint\n")
    print("| run | " + " | ".join(f"step {step}" for step in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for run_dir, metrics in results.items():
        cells = [
            f"{metrics[step]['modes_covered']} / {metrics[step]['high_quality_percent']:.1f}"
            if step in metrics
            else "—"
            for step in steps
        ]
        print(f"| {run_dir} | " + " | ".join(cells) + " |")
    return results


if __name__ == "__main__":
    main()
