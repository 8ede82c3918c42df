"""Digits benchmark: plain GAN vs GAN + SMaRt on the embedded 8×8 digits, at the same budget and seeds.

Both methods train with training/train_smart_gan.py from the digits preset (training/configs/digits.yaml, the
recipe of `make demo`) and differ only in --smart_weight (0: the plain GAN), or in the flags a --method row
adds (e.g. a SMaRt variant). Each trained generator (its EMA weights, as exported) draws --num_samples images
(50,000, as FID-50k: the classifier's features are heavy-tailed, and with 2,000 samples the FD of one
generator moves by ±0.3 between draws, as much as the effect measured; --redraws shows that spread), judged in
the feature space of smart_hf's small digits classifier (`smart_hf.evaluation`):

- FD_digits: the Fréchet distance to the 1,797 digits (lower is better). It is not comparable with Inception
  FID. The row "real digits" is the FD between two random halves of the data (898 and 899 images): what
  perfect samples score at that sample size; with many more samples a generator can score below it.
- precision and recall (k-NN manifolds, Kynkäänniemi et al., 2019), density and coverage (Naeem et al.,
  2020), k = 3, in the same features against the 1,797 digits: the mean over disjoint chunks of 1,797
  generated images (27 of the 50,000), so that both sets have the same count, as those metrics assume.
  Precision and density measure fidelity, recall and coverage diversity. The "real digits" row: one random
  half against the other.
- classes: the histogram of the classifier's predictions over the ten digits; a digit is covered when it gets
  at least half of its fair share (5% of the samples).

Prints a markdown table and writes sample grids side by side (real digits, then each method's first seed).

    python -m benchmarks.digits                                   # seeds 0 1 2, the preset's budget
    python -m benchmarks.digits --jobs 2                          # two runs at a time, one thread each
    python -m benchmarks.digits --seeds 0 1 --extra_args "--max_train_steps 1500"
    python -m benchmarks.digits --seeds 0 --smart_weights 0.3 1 3 --jobs 2     # a lambda sweep
    python -m benchmarks.digits --method "SMaRt + fake score=--fake_score --fake_score_weight 1"   # a variant
    python -m benchmarks.digits --reuse --num_samples 2000 --redraws 5         # judge the same runs again
"""

import os
import shlex

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks.common import (
    CONFIGS,
    argument_parser,
    draw_digits,
    folder_name,
    judge_digits,
    markdown_table,
    mean_std,
    parse_method,
    read_metrics,
    real_digits,
    run_jobs,
    sample_images,
    save_panels,
    train_in_subprocess,
)
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics
from smart_hf.evaluation.precision_recall import density_coverage, precision_recall

PRESET = os.path.join(CONFIGS, "digits.yaml")
TARGET_IMPROVEMENT = 0.20
MANIFOLD_METRICS = ("precision", "recall", "density", "coverage")


def finished_run(output_dir: str, seed: int, smart_weight: float | None) -> dict | None:
    """The metrics.json of a finished training run in `output_dir` with this seed and lambda, else None.

    `smart_weight` None (the preset's lambda, or a --method's) is not compared, nor are other flags: --reuse
    trusts the folder to come from the same command.
    """
    try:
        metrics = read_metrics(output_dir)
    except FileNotFoundError:
        return None
    config = metrics["config"]
    if config["seed"] != seed or (smart_weight is not None and config["smart_weight"] != smart_weight):
        raise ValueError(
            f"{output_dir} holds a run with seed {config['seed']} and lambda {config['smart_weight']}, not "
            f"seed {seed} and lambda {smart_weight}: pass another --output_dir or drop --reuse."
        )
    return metrics


def manifold_metrics(real_features: torch.Tensor, fake_features: torch.Tensor) -> dict[str, float]:
    """Precision, recall, density and coverage (k = 3), each the mean over disjoint chunks of as many
    generated features as there are real ones (one chunk of all of them when there are fewer)."""
    size = min(len(real_features), len(fake_features))
    chunks = fake_features[: len(fake_features) // size * size].split(size)
    values = [
        precision_recall(real_features, chunk) | density_coverage(real_features, chunk) for chunk in chunks
    ]
    return {key: float(np.mean([value[key] for value in values])) for key in MANIFOLD_METRICS}


def run_dir(output_root: str, name: str, seed: int) -> str:
    return os.path.join(output_root, folder_name(name), str(seed))


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    """Runs the benchmark; returns the table's rows (method -> one result per seed)."""
    parser = argument_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_samples", type=int, default=50_000, help="Generated images per FD.")
    parser.add_argument(
        "--redraws",
        type=int,
        default=1,
        help="Draws of --num_samples images per run (FD: their mean); above 1 the table shows their spread.",
    )
    parser.add_argument("--extra_args", default="", help="Flags passed to every training run.")
    parser.add_argument(
        "--smart_weights",
        type=float,
        nargs="+",
        default=None,
        help="One GAN + SMaRt row per lambda (default: the preset's lambda only).",
    )
    parser.add_argument(
        "--method",
        dest="custom_methods",
        type=parse_method,
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="One more row: the preset with these training flags (repeatable), e.g. "
        "'SMaRt + fake score=--fake_score --fake_score_weight 1'.",
    )
    parser.add_argument("--output_dir", default="outputs/benchmarks/digits")
    parser.add_argument(
        "--jobs", type=int, default=1, help="Training runs at a time (each with one thread when above 1)."
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Judge the finished runs in --output_dir instead of training them again (same flags only).",
    )
    args = parser.parse_args(argv)
    if args.redraws < 1 or args.num_samples < 2:
        parser.error("--redraws must be >= 1 and --num_samples >= 2.")
    if any(flag.split("=")[0] == "--smart_weight" for flag in shlex.split(args.extra_args)):
        parser.error(
            "--extra_args must not set --smart_weight (it would turn the plain GAN into SMaRt too); "
            "use --smart_weights."
        )

    extractor = DigitsFeatureExtractor()
    real = real_digits()
    real_features = extractor.extract(real)
    reference = FeatureStatistics.from_features(real_features)
    halves = torch.randperm(len(real), generator=torch.Generator().manual_seed(0)).chunk(2)
    floor = FeatureStatistics.from_features(real_features[halves[0]])
    real_row = judge_digits(extractor, real[halves[1]], floor)
    real_row |= manifold_metrics(real_features[halves[0]], real_features[halves[1]])
    rows = {"real digits": [{**real_row, "spread": None, "seconds": None}]}
    grids = {"real digits": real[:64]}
    methods = {"GAN": ["--smart_weight", "0"]}  # name -> its flags on top of the preset
    for weight in args.smart_weights or [None]:
        name = "GAN + SMaRt" if weight is None else f"GAN + SMaRt (λ {weight:g})"
        methods[name] = [] if weight is None else ["--smart_weight", f"{weight:g}"]
    folders = [folder_name(name) for name in [*methods, *(name for name, _ in args.custom_methods)]]
    if len(set(folders)) < len(folders):
        parser.error(f"Two methods share a folder name ({folders}): give each --method a name of its own.")
    methods |= dict(args.custom_methods)
    runs = [(name, seed) for name in methods for seed in args.seeds]

    def train(run: tuple[str, int]) -> dict:
        name, seed = run
        output_dir, method_flags = run_dir(args.output_dir, *run), methods[name]
        weight = float(method_flags[1]) if method_flags[:1] == ["--smart_weight"] else None
        metrics = finished_run(output_dir, seed, weight) if args.reuse else None
        if metrics is None:
            flags = ["--seed", str(seed), *method_flags, *shlex.split(args.extra_args)]
            metrics = train_in_subprocess(
                ["--config", PRESET, *flags], output_dir, single_thread=args.jobs > 1
            )
        print(f"{name} seed {seed}: trained in {metrics['train_seconds']:.0f} s", flush=True)
        return metrics

    finished = dict(zip(runs, run_jobs(train, runs, args.jobs), strict=True))
    for name, seed in tqdm(runs, desc="judging"):
        draws = []
        for draw in range(args.redraws):
            images = sample_images(run_dir(args.output_dir, name, seed), args.num_samples, seed + 1000 * draw)
            draws.append(judge_digits(extractor, images, reference))
            draws[-1] |= manifold_metrics(real_features, extractor.extract(images))
            if seed == args.seeds[0] and draw == 0:
                grids[name] = images[:64]
        distances = [d["fd"] for d in draws]
        result = {**draws[0], "fd": np.mean(distances), "spread": np.std(distances)}
        result |= {key: float(np.mean([d[key] for d in draws])) for key in MANIFOLD_METRICS}
        rows.setdefault(name, []).append({**result, "seconds": finished[name, seed]["train_seconds"]})
        tqdm.write(
            f"{name} seed {seed}: FD_digits {', '.join(f'{fd:.3f}' for fd in distances)}, "
            f"precision {result['precision']:.3f}, recall {result['recall']:.3f}"
        )

    print(
        f"\ndigits, seeds {args.seeds}, {args.num_samples} samples per FD ({args.redraws} draw(s) per run), "
        f"preset {os.path.relpath(PRESET)}"
    )
    print(f"extra args: {args.extra_args or '(none)'}; {args.jobs} training run(s) at a time\n")
    redrawn = args.redraws > 1
    header = ["method", "FD_digits", "per seed", *(["FD spread between draws (std)"] if redrawn else [])]
    header += ["precision", "recall", "recall per seed", "density", "coverage"]
    header += ["digits covered", "class histogram 0–9 (%)", "training time per run (s)"]
    table = []
    for name, results in rows.items():
        distances = [r["fd"] for r in results]
        histogram = np.mean([r["histogram"] for r in results], axis=0) * 100
        seconds = [r["seconds"] for r in results if r["seconds"] is not None]
        spreads = [r["spread"] for r in results if r["spread"] is not None]
        spread = [f"{np.mean(spreads):.3f}" if spreads else "—"] if redrawn else []
        table.append(
            [
                name,
                mean_std(distances, ".3f"),
                ", ".join(f"{fd:.3f}" for fd in distances),
                *spread,
                mean_std([r["precision"] for r in results], ".3f"),
                mean_std([r["recall"] for r in results], ".3f"),
                ", ".join(f"{r['recall']:.3f}" for r in results),
                mean_std([r["density"] for r in results], ".3f"),
                mean_std([r["coverage"] for r in results], ".3f"),
                mean_std([r["covered"] for r in results], ".1f"),
                " ".join(f"{share:.0f}" for share in histogram),
                mean_std(seconds, ".0f") if seconds else "—",
            ]
        )
    print(markdown_table(header, table))
    plain = np.mean([r["fd"] for r in rows["GAN"]])
    plain_recall = np.mean([r["recall"] for r in rows["GAN"]])
    for name in list(methods)[1:]:
        improvement = 1 - np.mean([r["fd"] for r in rows[name]]) / plain
        verdict = "met" if improvement >= TARGET_IMPROVEMENT else "NOT met"
        recall = np.mean([r["recall"] for r in rows[name]])
        recall_verdict = "not below" if recall >= plain_recall else "below"
        print(
            f"\n{name} changes FD_digits by {-100 * improvement:+.1f}% against the plain GAN "
            f"(target: −{100 * TARGET_IMPROVEMENT:.0f}% or better: {verdict}); its recall is {recall:.3f} "
            f"against the plain GAN's {plain_recall:.3f} ({recall_verdict})."
        )

    figure_path = os.path.join(args.output_dir, "digits_samples.png")
    save_panels(grids, draw_digits, figure_path, (4, 4.4))
    print(f"\nFigure: {figure_path}")
    return rows


if __name__ == "__main__":
    main()
