"""How much a toy generator's samples depend on the batch they are drawn in (BatchNorm's batch statistics).

A generator with BatchNorm trains on the statistics of each batch but samples with its running statistics.
This scores the final generator of finished toy runs both ways, on the run's own `--num_eval_samples` latents:
with its running statistics (how it samples, and how it trains after `--freeze_batch_norm_step`) and with the
statistics of each batch of `--batch_size` of those latents (how the discriminator and the score saw it while
the statistics were not frozen).

    python benchmarks/toy2d_batch_norm.py outputs/benchmarks/toy2d_before_freeze/{GAN,analytic_score}/{0,1,2}
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy2d_trajectory import run_config  # noqa: E402

from smart_hf.models.toy_mlp import ToyGenerator  # noqa: E402
from smart_hf.toy2d import load_toy_dataset, toy_metrics  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", help="Output folders of finished train_smart_gan.py toy runs.")
    parser.add_argument(
        "--batch_size", type=int, default=256, help="Batch size for the batch statistics (the preset's)."
    )
    return parser.parse_args(argv)


def load_run(run_dir: str) -> tuple[ToyGenerator, dict]:
    """The final generator of a finished toy run and the training flags saved in its metrics.json."""
    config = run_config(run_dir)
    generator = ToyGenerator.from_pretrained(os.path.join(run_dir, "generator"))
    if not any(isinstance(module, torch.nn.BatchNorm1d) for module in generator.modules()):
        raise ValueError(
            f"The generator of {run_dir} has no BatchNorm: it was trained without --generator_batch_norm."
        )
    return generator, config


@torch.no_grad()
def batch_norm_metrics(run_dir: str, batch_size: int) -> dict[str, dict[str, float]]:
    """Toy metrics of the run's final generator with its running statistics and with per-batch statistics."""
    generator, config = load_run(run_dir)
    dataset = load_toy_dataset(config["dataset_name"])
    latents = torch.randn(
        config["num_eval_samples"],
        config["latent_dim"],
        generator=torch.Generator().manual_seed(config["seed"]),
    )
    running = generator.eval()(latents)
    per_batch = torch.cat([generator.train()(batch) for batch in latents.split(batch_size)])
    return {
        "running": toy_metrics(running, dataset, seed=config["seed"]),
        "batch": toy_metrics(per_batch, dataset, seed=config["seed"]),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    args = parse_args(argv)
    results = {run_dir: batch_norm_metrics(run_dir, args.batch_size) for run_dir in args.run_dirs}
    print("modes covered / high-quality % of each final generator\n")
    print(f"| run | running statistics (how it samples) | statistics of each batch of {args.batch_size} |")
    print("|---|---|---|")
    for run_dir, metrics in results.items():
        cells = [f"{m['modes_covered']} / {m['high_quality_percent']:.1f}" for m in metrics.values()]
        print(f"| {run_dir} | " + " | ".join(cells) + " |")
    return results


if __name__ == "__main__":
    main()
