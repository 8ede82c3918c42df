"""How much a toy generator's samples depend on the batch they are drawn in (BatchNorm's batch statistics).

A generator with BatchNorm trains on the statistics of each batch but samples with its running statistics.
This scores the final generator of finished toy runs both ways, on the run's own `--num_eval_samples` latents:
with its running statistics (how it samples, and how it trains after `--freeze_batch_norm_step`) and with the
statistics of each batch of `--batch_size` of those latents (how the discriminator and the score saw it while
the statistics were not frozen).

    python -m benchmarks.toy2d_batch_norm outputs/benchmarks/toy2d_before_freeze/{GAN,analytic_score}/{0,1,2}
"""

import argparse
import os

import torch

from benchmarks.common import argument_parser, eval_latents, markdown_table, read_metrics
from smart_hf.models.toy_mlp import ToyGenerator
from smart_hf.toy2d import load_toy_dataset, toy_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("run_dirs", nargs="+", help="Output folders of finished train_smart_gan.py toy runs.")
    parser.add_argument(
        "--batch_size", type=int, default=256, help="Batch size for the batch statistics (the preset's)."
    )
    return parser.parse_args(argv)


def load_run(run_dir: str) -> tuple[ToyGenerator, dict]:
    """The final generator of a finished toy run and the training flags saved in its metrics.json."""
    config = read_metrics(run_dir)["config"]
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
    latents = eval_latents(config)
    running = generator.eval()(latents)
    per_batch = torch.cat([generator.train()(batch) for batch in latents.split(batch_size)])
    return {
        "running": toy_metrics(running, dataset, seed=config["seed"]),
        "batch": toy_metrics(per_batch, dataset, seed=config["seed"]),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    args = parse_args(argv)
    results = {run_dir: batch_norm_metrics(run_dir, args.batch_size) for run_dir in args.run_dirs}
    header = ["run", "running statistics (how it samples)", f"statistics of each batch of {args.batch_size}"]
    table = [
        [run_dir, *(f"{m['modes_covered']} / {m['high_quality_percent']:.1f}" for m in metrics.values())]
        for run_dir, metrics in results.items()
    ]
    print("modes covered / high-quality % of each final generator\n")
    print(markdown_table(header, table))
    return results


if __name__ == "__main__":
    main()
