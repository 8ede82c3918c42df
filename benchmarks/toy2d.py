"""Toy 2-D benchmark: plain GAN vs GAN + SMaRt on a family of Gaussian mixtures, and methods given by flags.

Every method trains with `training/train_smart_gan.py` at the same step budget and seeds, and is scored on
2,500 samples by `smart_hf.toy2d.toy_metrics`: modes covered (a mode counts when it gets at least a quarter of
the high-quality samples its weight asks for), % high-quality samples (within 3 std of the nearest mode), the
sliced Wasserstein distance to fresh data, the mass error (total variation between the modes' shares of the
high-quality samples and the mixture's weights) and the lightest mode's share over its weight. Prints per
mixture a markdown table (mean ± std over seeds) and the per-seed values, and writes a side-by-side scatter
figure of each method's first seed.

    python -m benchmarks.toy2d                      # grid25, 3 seeds: GAN, SMaRt (analytic and learned score)
    python -m benchmarks.toy2d --jobs 2             # two runs at a time, one thread each
    python -m benchmarks.toy2d --mixtures all --methods gan analytic --jobs 2    # the whole family
    python -m benchmarks.toy2d --mixtures grid9_weighted --method "wide t=--smart_t_max 400"
    python -m benchmarks.toy2d --seeds 0 1 2 3 4 --extra_args "--max_train_steps 8000"
    python -m benchmarks.toy2d --methods analytic learned   # skip the plain GAN (its runs do not depend on t)

Every run starts from the toy preset `training/configs/grid25.yaml` (the best recipe found on grid25 at about
a minute per run on a 2-core CPU, see the README): a 2-D-latent MLP generator with Fourier features of its
latent and BatchNorm (frozen for the second half), Adam(0.5, 0.999) with a warmup-stable-decay learning rate,
and SMaRt in its `sds` form (4 noise draws per sample) ramped in over the second half. The built-in methods
differ only in `--smart_weight 0` (the plain GAN) and `--score`; each `--method NAME=FLAGS` adds one more,
its flags last (they win).

Runs are cached: a run's folder, `<output_dir>/<mixture>/<method>/<seed>`, is reused when its metrics.json
holds the configuration that its flags give now (flags added to the training script since then at their
defaults), so a method can be added later without re-running the others. Metrics are recomputed from the
run's samples.npy, so a cached run is scored like a fresh one.
"""

import argparse
import json
import os
import shlex

import numpy as np
import torch

from benchmarks.common import (
    CONFIGS,
    SCORE_MODELS,
    argument_parser,
    folder_name,
    markdown_table,
    mean_std,
    parse_method,
    point_drawer,
    read_metrics,
    run_jobs,
    save_panels,
    toy_mixtures,
    train_in_subprocess,
    true_samples,
)
from smart_hf.toy2d import COVERED_SHARE, TOY_DATASETS, load_toy_dataset, toy_metrics

PRESET = os.path.join(CONFIGS, "grid25.yaml")
LEARNED_SCORES = {"grid25": os.path.join(SCORE_MODELS, "grid25-mlp")}
METHOD_NAMES = {
    "gan": "GAN",
    "analytic": "GAN + SMaRt (analytic score)",
    "learned": "GAN + SMaRt (learned score)",
}
BENCHMARK_FILE = "benchmark.json"  # beside a run's metrics.json: its flags and wall time
# Config keys that do not change a run's result (the preset's path: its values are the other keys).
NOT_RESULT_KEYS = {
    "output_dir",
    "overwrite_output_dir",
    "config",
    "checkpointing_steps",
    "checkpoints_total_limit",
}
SUMMARY_HEADER = [
    "method",
    f"modes covered (≥ {COVERED_SHARE:g} of share)",
    "high-quality %",
    "sliced W1",
    "mass TV %",
    "lightest-mode share ÷ weight",
    "modes with any HQ sample",
    "wall time per run (s)",
]
SEED_HEADER = ["method", "seed", "modes covered", "high-quality %", "sliced W1", "mass TV %", "lightest ÷ w"]


def methods(dataset_name: str, chosen: list[str] | None = None) -> dict[str, list[str]]:
    """Display name -> the flags that make the method, for the `chosen` ids (None: all the data set has)."""
    flags = {"gan": ["--smart_weight", "0"], "analytic": ["--score", "analytic"]}
    if dataset_name in LEARNED_SCORES:
        flags["learned"] = ["--score", LEARNED_SCORES[dataset_name]]
    return {METHOD_NAMES[key]: value for key, value in flags.items() if chosen is None or key in chosen}


def method_folder(name: str) -> str:
    """A method's folder: "GAN", the score of a built-in SMaRt method ("analytic_score"), or its name with
    runs of other characters than letters, digits, '.', '-' and '_' made one '_'."""
    if name in METHOD_NAMES.values() and "(" in name:
        return name.split("(")[-1].strip(")").replace(" ", "_")
    return folder_name(name)


def run_dir(output_root: str, mixture: str, name: str, seed: int) -> str:
    return os.path.join(output_root, mixture, method_folder(name), str(seed))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset_name", default="grid25", help="The mixture, when --mixtures is not given.")
    parser.add_argument(
        "--mixtures",
        nargs="+",
        help=f"Mixtures to run, or 'all': {', '.join(TOY_DATASETS)} (default: --dataset_name).",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--extra_args",
        default="",
        help="Flags passed to every training run, before each method's own flags: a --smart_weight here sets "
        "the SMaRt methods' lambda, and the plain GAN keeps 0.",
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=sorted(METHOD_NAMES),
        help="Which built-in methods to train (default: every one a mixture has; 'learned' needs a shipped "
        "score); with no value, only the --method ones.",
    )
    parser.add_argument(
        "--method",
        dest="custom_methods",
        action="append",
        type=parse_method,
        default=[],
        metavar="NAME=FLAGS",
        help="One more method: its display name and its train_smart_gan.py flags (after --extra_args); "
        "repeatable. Its runs go to a folder named after it.",
    )
    parser.add_argument("--output_dir", default="outputs/benchmarks/toy2d")
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time; > 1 gives each run one thread.")
    parser.add_argument(
        "--no_train",
        action="store_true",
        help="Tables from the cached runs only: a run not found is left out (and named), not trained.",
    )
    args = parser.parse_args(argv)
    args.mixtures = toy_mixtures(parser, args.mixtures or [args.dataset_name])
    if any(flag.split("=")[0] == "--score" for flag in shlex.split(args.extra_args)):
        parser.error(
            "--extra_args must not set --score: the methods differ by their score (analytic, learned). "
            "To try another score, add a method: --method 'NAME=--score <path>'."
        )
    for mixture in args.mixtures:
        if args.methods and "learned" in args.methods and mixture not in LEARNED_SCORES:
            parser.error(f"No learned score is shipped for {mixture}: drop 'learned' from --methods.")
    folders = [method_folder(name) for name in METHOD_NAMES.values()]
    folders += [method_folder(name) for name, _ in args.custom_methods]
    if len(set(folders)) < len(folders):
        parser.error(
            "Every --method needs a name of its own (different folders from each other and the built-ins)."
        )
    return args


def is_cached(folder: str, flags: list[str]) -> bool:
    """Whether `folder` holds a finished run whose recorded configuration is the one `flags` give now.

    Flags that the training script gained after the run must be at their defaults; --mixed_precision left to
    accelerate matches whatever the run resolved it to; NOT_RESULT_KEYS are not compared."""
    # Imported here: only a check of a cached run needs the training configuration.
    from smart_hf.training.config import parse_gan_args
    from smart_hf.training.options import to_flat

    if not all(os.path.isfile(os.path.join(folder, name)) for name in ("metrics.json", "samples.npy")):
        return False

    def flat(argv: list[str]) -> dict:
        return json.loads(json.dumps(to_flat(parse_gan_args([*argv, "--output_dir", folder]))))

    recorded, wanted, defaults = read_metrics(folder)["config"], flat(flags), flat([])
    for key, value in wanted.items():
        if key in NOT_RESULT_KEYS or (key == "mixed_precision" and value is None):
            continue
        if recorded.get(key, defaults[key]) != value:
            return False
    return True


def score_run(folder: str, dataset, seed: int) -> dict:
    """A finished run's metrics.json and wall time, with the toy metrics recomputed from its samples."""
    samples = torch.from_numpy(np.load(os.path.join(folder, "samples.npy")))
    metrics = {**read_metrics(folder), **toy_metrics(samples, dataset, seed=seed)}
    benchmark_path = os.path.join(folder, BENCHMARK_FILE)
    if os.path.isfile(benchmark_path):
        with open(benchmark_path) as f:
            metrics["wall_seconds"] = json.load(f)["wall_seconds"]
    return metrics


def summary_table(rows: dict[str, list[dict]]) -> str:
    """Per method: the mean ± std over its runs of the toy metrics and the wall time."""
    table = []
    for label, results in rows.items():

        def column(key: str, fmt: str, results=results) -> str:
            return mean_std([result[key] for result in results], fmt)

        wall = [result["wall_seconds"] for result in results if "wall_seconds" in result]
        table.append(
            [
                label,
                f"{column('modes_covered_quarter', '.1f')} / {results[0]['num_modes']}",
                column("high_quality_percent", ".1f"),
                column("sliced_wasserstein", ".3f"),
                column("mass_tv_percent", ".1f"),
                column("lightest_mode_ratio", ".2f"),
                column("modes_covered", ".1f"),
                mean_std(wall, ".0f") if wall else "—",
            ]
        )
    return markdown_table(SUMMARY_HEADER, table)


def seed_table(rows: dict[str, list[dict]]) -> str:
    """Every run's values, one row per method and seed."""
    table = [
        [
            label,
            result["config"]["seed"],
            f"{result['modes_covered_quarter']}/{result['num_modes']}",
            f"{result['high_quality_percent']:.1f}",
            f"{result['sliced_wasserstein']:.3f}",
            f"{result['mass_tv_percent']:.1f}",
            f"{result['lightest_mode_ratio']:.2f}",
        ]
        for label, results in rows.items()
        if label != "true data"
        for result in results
    ]
    return markdown_table(SEED_HEADER, table)


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[dict]]]:
    """Trains (or reuses) every method on every mixture and seed and prints the tables; returns per mixture
    each method's per-seed metrics, after a "true data" row."""
    args = parse_args(argv)
    selected = {
        mixture: {**methods(mixture, args.methods), **dict(args.custom_methods)} for mixture in args.mixtures
    }
    datasets = {mixture: load_toy_dataset(mixture) for mixture in args.mixtures}
    runs = [
        (mixture, name, seed)
        for mixture in args.mixtures
        for name in selected[mixture]
        for seed in args.seeds
    ]

    def train(run: tuple[str, str, int]) -> dict | None:
        mixture, name, seed = run
        folder = run_dir(args.output_dir, *run)
        flags = ["--config", PRESET, "--dataset_name", mixture, "--seed", str(seed)]
        flags += [*shlex.split(args.extra_args), *selected[mixture][name]]  # the method's flags win
        if not is_cached(folder, flags):
            if args.no_train:
                return None
            wall_seconds = train_in_subprocess(flags, folder, single_thread=args.jobs > 1)["wall_seconds"]
            with open(os.path.join(folder, BENCHMARK_FILE), "w") as f:
                json.dump({"flags": flags, "wall_seconds": wall_seconds}, f, indent=2)
        return score_run(folder, datasets[mixture], seed)

    results = {}
    for mixture in args.mixtures:
        reference = true_samples(datasets[mixture])
        results[mixture] = {"true data": [toy_metrics(reference, datasets[mixture])]}
    for (mixture, name, seed), metrics in zip(runs, run_jobs(train, runs, args.jobs), strict=True):
        if metrics is None:
            print(f"{mixture} {name} seed {seed}: no finished run, left out (--no_train)", flush=True)
            continue
        print(
            f"{mixture} {name} seed {seed}: {metrics['modes_covered_quarter']}/{metrics['num_modes']} modes, "
            f"{metrics['high_quality_percent']:.1f}% HQ, mass TV {metrics['mass_tv_percent']:.1f}%, "
            f"{metrics.get('wall_seconds', 0):.0f} s",
            flush=True,
        )
        results[mixture].setdefault(name, []).append(metrics)

    os.makedirs(args.output_dir, exist_ok=True)
    for mixture, rows in results.items():
        print(f"\n{mixture}, seeds {args.seeds}, extra args: {args.extra_args or '(none)'}\n")
        print(summary_table(rows))
        print(f"\nPer seed:\n\n{seed_table(rows)}")
        scatter = {"true data": true_samples(datasets[mixture]).numpy()}
        for name in rows:
            path = os.path.join(run_dir(args.output_dir, mixture, name, args.seeds[0]), "samples.npy")
            if name != "true data" and os.path.isfile(path):
                scatter[name] = np.load(path)
        figure_path = os.path.join(args.output_dir, f"{mixture}_samples.png")
        save_panels(scatter, point_drawer(datasets[mixture]), figure_path, (4, 4.2))
        print(f"\nFigure: {figure_path}")
    return results


if __name__ == "__main__":
    main()
