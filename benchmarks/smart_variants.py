"""SMaRt's variants side by side on toy mixtures: do any keep its quality gain without its diversity cost?

Every method trains from the toy preset `training/configs/grid25.yaml` (SMaRt `sds`, t ∈ [50, 100], 4 noise
draws, lambda ramped in over the second half; the preset's lambda is 0.03, `smart` is 0.3) with the exact
score of the mixture, and differs only in the flags listed in METHODS. Each run is scored on its 2,500 samples
by `smart_hf.toy2d.toy_metrics`: modes covered (at least one high-quality sample, and at least a quarter of
the mode's expected count), % high quality, sliced W1, the per-mode mass error (total variation between the
modes' shares of the HQ samples and the mixture's weights) and the lightest mode's share relative to its
weight. Prints one markdown table per mixture (mean ± std over seeds, issue 27's target checked against the
plain GAN, and per seed), draws the trade-off figure (% HQ against mass TV and against W1, one point per
method, error bars = std over seeds, the lambda sweep 0 → 0.03 → 0.1 → 0.2 → 0.3 joined by a line) and a
samples figure per mixture.

    python -m benchmarks.smart_variants --jobs 2                        # grid25 and grid9_weighted, seeds 0-2
    python -m benchmarks.smart_variants --mixtures all --jobs 2 \\
        --methods gan smart_w0.03 smart_w0.1 smart_w0.2 smart smart_dm3     # the whole family, lambda sweep
    python -m benchmarks.smart_variants --mixtures ring8 --methods gan smart smart_dm1
    python -m benchmarks.smart_variants --no_train                      # tables from the runs already there

Runs whose folder already holds a metrics.json are not trained again (delete the folder to redo one); the
plain GAN and SMaRt runs of `python -m benchmarks.toy2d` (same preset, same seeds: the same runs) are reused
from --baseline_dir when there.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    CONFIGS,
    argument_parser,
    markdown_table,
    mean_std,
    point_drawer,
    run_jobs,
    save_panels,
    toy_mixtures,
    train_in_subprocess,
    true_samples,
)
from smart_hf.toy2d import TOY_DATASETS, load_toy_dataset, toy_metrics  # noqa: E402

PRESET = os.path.join(CONFIGS, "grid25.yaml")
FAKE_SCORE_RAMP = ["--fake_score_warmup_start", "2000", "--fake_score_warmup_steps", "2000"]
# Method id -> the flags that make it, on top of the preset (lambda 0.03 since issue 27; "smart" is lambda
# 0.3, the preset's lambda before).
METHODS = {
    "gan": ["--smart_weight", "0"],
    "smart": ["--smart_weight", "0.3"],
    "smart_w0.03": ["--smart_weight", "0.03"],
    "smart_w0.1": ["--smart_weight", "0.1"],
    "smart_w0.2": ["--smart_weight", "0.2"],
    "smart_decay": [
        "--smart_warmup_steps",
        "1000",
        "--smart_decay_start",
        "3000",
        "--smart_decay_steps",
        "1000",
    ],
    "smart_dweight": ["--smart_sample_weighting", "discriminator"],
    "dm1": ["--smart_weight", "0", "--fake_score", "--fake_score_weight", "1", *FAKE_SCORE_RAMP],
    "smart_dm1": ["--fake_score", "--fake_score_weight", "1", *FAKE_SCORE_RAMP],
    "dm3": ["--smart_weight", "0", "--fake_score", "--fake_score_weight", "3", *FAKE_SCORE_RAMP],
    "smart_dm3": ["--fake_score", "--fake_score_weight", "3", *FAKE_SCORE_RAMP],
}
# The lambda sweep (the paper's form at each weight), joined by a line in the trade-off figure.
LAMBDA_SWEEP = {"gan": 0.0, "smart_w0.03": 0.03, "smart_w0.1": 0.1, "smart_w0.2": 0.2, "smart": 0.3}
# The folders `benchmarks.toy2d` gives the same runs (its SMaRt is the preset's).
BASELINE_FOLDERS = {"gan": "GAN", "smart_w0.03": "analytic_score"}
HEADER = [
    "method",
    "modes (≥1 HQ)",
    "modes (≥¼ share)",
    "HQ %",
    "sliced W1",
    "mass TV %",
    "lightest mode share / weight",
    "target vs gan",
    "per seed: HQ % / mass TV % / W1",
]


def run_dir(output_root: str, mixture: str, method: str, seed: int, baseline_root: str | None = None) -> str:
    """The run's folder: under `output_root`, or for the GAN and SMaRt the toy benchmark's when only it has
    the run."""
    folder = os.path.join(output_root, mixture, method, str(seed))
    if (
        baseline_root
        and method in BASELINE_FOLDERS
        and not os.path.isfile(os.path.join(folder, "samples.npy"))
    ):
        baseline = os.path.join(baseline_root, mixture, BASELINE_FOLDERS[method], str(seed))
        if os.path.isfile(os.path.join(baseline, "samples.npy")):
            return baseline
    return folder


def train(item: tuple[str, str, int, str, str, bool]) -> None:
    mixture, method, seed, output_root, baseline_root, single_thread = item
    folder = run_dir(output_root, mixture, method, seed, baseline_root)
    if os.path.isfile(os.path.join(folder, "metrics.json")):
        return
    flags = ["--config", PRESET, "--dataset_name", mixture, "--seed", str(seed), "--checkpointing_steps", "0"]
    train_in_subprocess([*flags, *METHODS[method]], folder, single_thread)


def score(output_root: str, baseline_root: str, mixture: str, method: str, seed: int) -> dict | None:
    """The toy metrics of a finished run, recomputed from its samples.npy (None if it has none)."""
    path = os.path.join(run_dir(output_root, mixture, method, seed, baseline_root), "samples.npy")
    if not os.path.isfile(path):
        return None
    samples = torch.from_numpy(np.load(path))
    return {**toy_metrics(samples, load_toy_dataset(mixture), seed=seed), "seed": seed}


def target_verdict(runs: list[dict], gan_runs: list[dict]) -> str:
    """Issue 27's target against the plain GAN: HQ % above its mean; sliced W1 and mass TV at most its mean +
    its std; every mode covered (≥ ¼ share) on every seed. "met", or what missed it."""

    def mean(values_of, key):
        return float(np.mean([r[key] for r in values_of]))

    missed = []
    if not mean(runs, "high_quality_percent") > mean(gan_runs, "high_quality_percent"):
        missed.append("HQ")
    for key, name in (("sliced_wasserstein", "W1"), ("mass_tv_percent", "TV")):
        if mean(runs, key) > mean(gan_runs, key) + float(np.std([r[key] for r in gan_runs])):
            missed.append(name)
    if any(r["modes_covered_quarter"] < r["num_modes"] for r in runs):
        missed.append("modes")
    return "met" if not missed else "missed: " + ", ".join(missed)


def table(results: dict[str, list[dict]]) -> str:
    rows = []
    for method, runs in results.items():
        num_modes = runs[0]["num_modes"]
        per_seed = "; ".join(
            f"s{r['seed']}: {r['high_quality_percent']:.1f} / {r['mass_tv_percent']:.1f} / "
            f"{r['sliced_wasserstein']:.3f}"
            for r in runs
        )
        rows.append(
            [
                f"{method} ({len(runs)} seeds)",
                f"{mean_std([r['modes_covered'] for r in runs], '.1f')} / {num_modes}",
                f"{mean_std([r['modes_covered_quarter'] for r in runs], '.1f')} / {num_modes}",
                mean_std([r["high_quality_percent"] for r in runs], ".1f"),
                mean_std([r["sliced_wasserstein"] for r in runs], ".3f"),
                mean_std([r["mass_tv_percent"] for r in runs], ".1f"),
                mean_std([r["lightest_mode_ratio"] for r in runs], ".2f"),
                target_verdict(runs, results["gan"]) if "gan" in results and method != "gan" else "—",
                per_seed,
            ]
        )
    return markdown_table(HEADER, rows)


def tradeoff_figure(all_results: dict[str, dict[str, list[dict]]], path: str) -> None:
    """Per mixture: % HQ against mass TV and against sliced W1, one point per method (std error bars)."""
    mixtures = list(all_results)
    shown = dict.fromkeys(method for results in all_results.values() for method in results)
    colors = {method: f"C{index % 10}" for index, method in enumerate(shown)}  # one per method, every panel
    fig, axes = plt.subplots(len(mixtures), 2, figsize=(11, 4.2 * len(mixtures)), squeeze=False)
    for row, mixture in enumerate(mixtures):
        for col, (key, label) in enumerate(
            (("mass_tv_percent", "per-mode mass TV % (lower is better)"), ("sliced_wasserstein", "sliced W1"))
        ):
            ax = axes[row, col]
            for method, runs in all_results[mixture].items():
                x = np.array([r[key] for r in runs])
                y = np.array([r["high_quality_percent"] for r in runs])
                color = colors[method]
                ax.errorbar(
                    x.mean(),
                    y.mean(),
                    xerr=x.std(),
                    yerr=y.std(),
                    fmt="o",
                    capsize=3,
                    color=color,
                    label=method,
                )
                ax.annotate(
                    method, (x.mean(), y.mean()), textcoords="offset points", xytext=(4, 4), fontsize=7
                )
            sweep = [m for m in LAMBDA_SWEEP if m in all_results[mixture]]
            if len(sweep) > 1:  # the lambda sweep as a path, from the GAN (lambda 0) up
                means = [
                    (
                        np.mean([r[key] for r in all_results[mixture][m]]),
                        np.mean([r["high_quality_percent"] for r in all_results[mixture][m]]),
                    )
                    for m in sweep
                ]
                ax.plot(*zip(*means, strict=True), "-", color="0.6", lw=1, zorder=0, label="lambda sweep")
            ax.set(xlabel=label, ylabel="high-quality %", title=mixture)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def samples_figure(args: argparse.Namespace, mixture: str) -> None:
    """True data, then the first seed's samples of each of --sample_methods that has the run."""
    dataset = load_toy_dataset(mixture)
    panels = {"true data": true_samples(dataset).numpy()}
    for method in args.sample_methods:
        path = os.path.join(
            run_dir(args.output_dir, mixture, method, args.seeds[0], args.baseline_dir), "samples.npy"
        )
        if os.path.isfile(path):
            panels[f"{method} (seed {args.seeds[0]})"] = np.load(path)
    if len(panels) > 1:
        path = args.samples_figures.format(mixture=mixture)
        save_panels(panels, point_drawer(dataset), path, (3.6, 3.8))
        print(f"Samples: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--mixtures",
        nargs="+",
        default=["grid25", "grid9_weighted"],
        help=f"Mixtures, or 'all': {', '.join(TOY_DATASETS)}.",
    )
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output_dir", default="outputs/smart_variants")
    parser.add_argument("--baseline_dir", default="outputs/benchmarks/toy2d", help="benchmarks.toy2d's runs.")
    parser.add_argument("--figure", default="docs/smart_variants_tradeoff.png")
    parser.add_argument(
        "--samples_figures",
        default="docs/smart_variants_samples_{mixture}.png",
        help="Per mixture: true data beside the first seed's samples of --sample_methods ('' for none).",
    )
    parser.add_argument("--sample_methods", nargs="+", default=["gan", "smart_w0.03", "smart_w0.1", "smart"])
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time; > 1 gives each run one thread.")
    parser.add_argument("--no_train", action="store_true", help="Only score the runs already there.")
    args = parser.parse_args(argv)
    args.mixtures = toy_mixtures(parser, args.mixtures)

    if not args.no_train:
        items = [
            (mixture, method, seed, args.output_dir, args.baseline_dir, args.jobs > 1)
            for seed in args.seeds
            for mixture in args.mixtures
            for method in args.methods
        ]
        list(run_jobs(train, items, args.jobs))
    all_results = {}
    for mixture in args.mixtures:
        results = {}
        for method in args.methods:
            runs = [score(args.output_dir, args.baseline_dir, mixture, method, seed) for seed in args.seeds]
            runs = [r for r in runs if r is not None]
            if runs:
                results[method] = runs
        if results:
            all_results[mixture] = results
            print(f"\n### {mixture}\n\n{table(results)}")
        if args.samples_figures:
            samples_figure(args, mixture)
    if all_results and args.figure:
        tradeoff_figure(all_results, args.figure)
        print(f"\nFigure: {args.figure}")


if __name__ == "__main__":
    main()
