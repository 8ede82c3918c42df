"""Where a learned toy score can be trusted: its pull against the exact score's, by distance to the data.

SMaRt moves each generated sample along the score model's denoising direction at x_t. A model trained by
denoising score matching sees x_t only near the data at low noise, so between the modes, where a GAN's bridge
samples lie, it extrapolates. For points spread uniformly over the data's bounding box (plus a margin), this
compares the model's denoised estimate x0_hat = (x_t − s_t·eps_hat)/a_t with the exact one of the Gaussian
mixture, at x_t = a_t·x (no noise drawn, so the numbers are the mean pull), per timestep and per band of
distance from x to its nearest mode:

- wrong mode %: the model's x0_hat lies nearest another mode than the exact x0_hat does;
- pull ratio: median of |x0_hat_model − x| / |x0_hat_exact − x| (1 = as far as the exact score pulls).

    python -m benchmarks.toy_score_accuracy                       # the shipped grid25-mlp
    python -m benchmarks.toy_score_accuracy --score outputs/my-grid25-score --timesteps 30 100
"""

import argparse
import itertools
import os

import torch

from benchmarks.common import SCORE_MODELS, argument_parser, markdown_table
from smart_hf.scores import ScoreFunction, load_score_model
from smart_hf.toy2d import TOY_DATASETS, load_toy_dataset

DEFAULT_SCORE = os.path.join(SCORE_MODELS, "grid25-mlp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--score", default=DEFAULT_SCORE, help="A toy score model folder, or 'analytic'.")
    parser.add_argument("--dataset_name", default="grid25", choices=sorted(TOY_DATASETS))
    parser.add_argument("--timesteps", type=int, nargs="+", default=[30, 100, 200])
    parser.add_argument(
        "--band_edges",
        type=float,
        nargs="+",
        default=[0.15, 0.5, 1.0],
        help="Distances to the nearest mode that split the points into bands (grid25: 0.15 = 3 data std).",
    )
    parser.add_argument("--num_points", type=int, default=20_000)
    parser.add_argument("--margin", type=float, default=0.5, help="Reach past the outer modes.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_points < 1:
        parser.error(f"--num_points must be >= 1, got {args.num_points}.")
    if any(b <= a for a, b in itertools.pairwise(args.band_edges)) or args.band_edges[0] <= 0:
        parser.error(f"--band_edges must be positive and increasing, got {args.band_edges}.")
    return args


def denoised_estimate(score: ScoreFunction, x: torch.Tensor, timestep: int) -> torch.Tensor:
    """x0_hat at x_t = a_t·x: where the score's noise prediction says the clean point lies."""
    timesteps = torch.full((x.shape[0],), timestep, dtype=torch.long)
    a_t, s_t = score.signal_and_noise_scales(timesteps, x.ndim)
    x_t = a_t * x
    with torch.no_grad():
        eps_hat = score(x_t, timesteps)
    return (x_t - s_t * eps_hat) / a_t


def main(argv: list[str] | None = None) -> list[dict]:
    """Prints the comparison table; returns one row per (timestep, distance band)."""
    args = parse_args(argv)
    data = load_toy_dataset(args.dataset_name)
    if args.score == "analytic":
        model = data.analytic_score()
    else:
        model = load_score_model(args.score)
        model.check_compatible(data.means.shape[1:])
    exact = data.analytic_score(model.alphas_cumprod)
    for timestep in args.timesteps:
        model.check_timestep_range(timestep, timestep)

    generator = torch.Generator().manual_seed(args.seed)
    low, high = data.means.min(0).values - args.margin, data.means.max(0).values + args.margin
    points = low + (high - low) * torch.rand(args.num_points, data.means.shape[1], generator=generator)
    distance = torch.cdist(points, data.means).min(1).values
    edges = [0.0, *args.band_edges, float("inf")]

    rows = []
    for timestep in args.timesteps:
        model_x0 = denoised_estimate(model, points, timestep)
        exact_x0 = denoised_estimate(exact, points, timestep)
        nearest_mode = torch.cdist(torch.cat([model_x0, exact_x0]), data.means).argmin(1)
        wrong_mode = nearest_mode[: len(points)] != nearest_mode[len(points) :]
        pull_ratio = (model_x0 - points).norm(dim=1) / (exact_x0 - points).norm(dim=1).clamp(min=1e-12)
        for low_edge, high_edge in itertools.pairwise(edges):
            band = (distance >= low_edge) & (distance < high_edge)
            if not band.any():
                continue
            rows.append(
                {
                    "timestep": timestep,
                    "band": f"{low_edge:g}–{high_edge:g}",
                    "points": int(band.sum()),
                    "wrong_mode_percent": 100.0 * wrong_mode[band].float().mean().item(),
                    "pull_ratio": pull_ratio[band].median().item(),
                }
            )

    name = args.score if args.score == "analytic" else os.path.relpath(args.score)
    print(f"\n{name} against the exact score of {args.dataset_name} ({args.num_points:,} points)\n")
    header = ["t", "distance to nearest mode", "points", "wrong mode %", "pull ratio (median)"]
    table = [
        [
            row["timestep"],
            row["band"],
            f"{row['points']:,}",
            f"{row['wrong_mode_percent']:.1f}",
            f"{row['pull_ratio']:.2f}",
        ]
        for row in rows
    ]
    print(markdown_table(header, table))
    return rows


if __name__ == "__main__":
    main()
