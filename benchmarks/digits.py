"""Digits benchmark: plain GAN vs GAN + SMaRt on the embedded 8×8 digits, at the same budget and seeds.

Both methods train with training/train_smart_gan.py from the digits preset (training/configs/digits.yaml, the
recipe of `make demo`) and differ only in --smart_weight (0: the plain GAN). Each trained generator (its EMA
weights, as exported) draws --num_samples images (50,000, as FID-50k: the classifier's features are
heavy-tailed, and with 2,000 samples the FD of one generator moves by ±0.3 between draws, as much as the
effect measured; --redraws shows that spread), judged in the feature space of smart_hf's small digits
classifier (`smart_hf.evaluation`):

- FD_digits: the Fréchet distance to the 1,797 digits (lower is better). It is not comparable with Inception
  FID. The row "real digits" is the FD between two random halves of the data (898 and 899 images): what
  perfect samples score at that sample size; with many more samples a generator can score below it.
- classes: the histogram of the classifier's predictions over the ten digits; a digit is covered when it gets
  at least half of its fair share (5% of the samples).

Prints a markdown table and writes sample grids side by side (real digits, then each method's first seed).

    python benchmarks/digits.py                                   # seeds 0 1 2, the preset's budget
    python benchmarks/digits.py --jobs 2                          # two runs at a time, one thread each
    python benchmarks/digits.py --seeds 0 1 --extra_args "--max_train_steps 1500"
    python benchmarks/digits.py --seeds 0 --smart_weights 0.3 1 3 --jobs 2     # a lambda sweep
    python benchmarks/digits.py --reuse --num_samples 2000 --redraws 5         # judge the same runs again
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from smart_hf import hub  # noqa: E402
from smart_hf.data import DIGITS, load_image_dataset  # noqa: E402
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics, frechet_distance  # noqa: E402
from smart_hf.evaluation.images import dataset_images, generated_images  # noqa: E402
from smart_hf.image_grid import image_grid  # noqa: E402
from smart_hf.pipelines import SmartOneStepPipeline  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO_ROOT, "training", "train_smart_gan.py")
PRESET = os.path.join(REPO_ROOT, "training", "configs", "digits.yaml")
NUM_CLASSES = 10
COVERED_SHARE = 0.5 / NUM_CLASSES
TARGET_IMPROVEMENT = 0.20


def run_training(flags: list[str], output_dir: str, threads: int | None) -> None:
    """Trains one generator in a subprocess."""
    command = [sys.executable, TRAIN_SCRIPT, "--config", PRESET, *flags, "--output_dir", output_dir]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if completed.returncode:
        raise RuntimeError(f"Training failed ({' '.join(command)}):\n{completed.stderr[-3000:]}")


def finished_run(output_dir: str, seed: int, smart_weight: float | None) -> dict | None:
    """The metrics.json of a finished training run in `output_dir` with this seed and lambda, else None.

    `smart_weight` None stands for the preset's lambda. Other flags are not compared: --reuse trusts the
    folder to come from the same command.
    """
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        metrics = json.load(file)
    config = metrics["config"]
    if config["seed"] != seed or (smart_weight is not None and config["smart_weight"] != smart_weight):
        raise ValueError(
            f"{output_dir} holds a run with seed {config['seed']} and lambda {config['smart_weight']}, not "
            f"seed {seed} and lambda {smart_weight}: pass another --output_dir or drop --reuse."
        )
    return metrics


def run_dir(output_root: str, name: str, seed: int) -> str:
    return os.path.join(output_root, name.replace(" ", "").replace("+", "_"), str(seed))


def sample(output_dir: str, num_samples: int, seed: int) -> torch.Tensor:
    """8-bit images in [−1, 1] from the generator of a training output folder (its EMA weights if any)."""
    pipeline = SmartOneStepPipeline(gan=hub.load_generator(output_dir).eval())
    return torch.cat(list(generated_images(pipeline, num_samples, seed=seed)))


def judge(extractor: DigitsFeatureExtractor, images: torch.Tensor, reference: FeatureStatistics) -> dict:
    """FD_digits to `reference` and the histogram (fractions) of the predicted digits."""
    histogram = torch.bincount(extractor.predict(images), minlength=NUM_CLASSES).float() / len(images)
    statistics = FeatureStatistics.from_features(extractor.extract(images))
    return {
        "fd": frechet_distance(statistics, reference),
        "histogram": histogram.numpy(),
        "covered": int((histogram >= COVERED_SHARE).sum()),
    }


def mean_std(values: list[float], fmt: str) -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    """Runs the benchmark; returns the table's rows (method -> one result per seed)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    real = torch.cat(list(dataset_images(load_image_dataset(DIGITS))))
    reference = FeatureStatistics.from_features(extractor.extract(real))
    halves = torch.randperm(len(real), generator=torch.Generator().manual_seed(0)).chunk(2)
    floor = FeatureStatistics.from_features(extractor.extract(real[halves[0]]))
    real_row = judge(extractor, real[halves[1]], floor)
    rows = {"real digits": [{**real_row, "spread": None, "seconds": None}]}
    grids = {"real digits": real[:64]}
    methods = {"GAN": 0.0}  # name -> --smart_weight (None: the preset's lambda)
    for weight in args.smart_weights or [None]:
        methods["GAN + SMaRt" if weight is None else f"GAN + SMaRt (λ {weight:g})"] = weight
    runs = [(name, seed) for name in methods for seed in args.seeds]

    def train(run: tuple[str, int]) -> dict:
        name, seed = run
        output_dir, weight = run_dir(args.output_dir, *run), methods[name]
        metrics = finished_run(output_dir, seed, weight) if args.reuse else None
        if metrics is None:
            weight_flags = [] if weight is None else ["--smart_weight", f"{weight:g}"]
            flags = ["--seed", str(seed), *weight_flags, *shlex.split(args.extra_args)]
            run_training(flags, output_dir, 1 if args.jobs > 1 else None)
            metrics = finished_run(output_dir, seed, weight)
        print(f"{name} seed {seed}: trained in {metrics['train_seconds']:.0f} s", flush=True)
        return metrics

    with ThreadPoolExecutor(args.jobs) as pool:
        finished = dict(zip(runs, pool.map(train, runs), strict=True))
    for name, seed in tqdm(runs, desc="judging"):
        draws = []
        for draw in range(args.redraws):
            images = sample(run_dir(args.output_dir, name, seed), args.num_samples, seed + 1000 * draw)
            draws.append(judge(extractor, images, reference))
            if seed == args.seeds[0] and draw == 0:
                grids[name] = images[:64]
        distances = [d["fd"] for d in draws]
        result = {**draws[0], "fd": np.mean(distances), "spread": np.std(distances)}
        rows.setdefault(name, []).append({**result, "seconds": finished[name, seed]["train_seconds"]})
        tqdm.write(f"{name} seed {seed}: FD_digits {', '.join(f'{fd:.3f}' for fd in distances)}")

    print(
        f"\ndigits, seeds {args.seeds}, {args.num_samples} samples per FD ({args.redraws} draw(s) per run), "
        f"preset {os.path.relpath(PRESET)}"
    )
    print(f"extra args: {args.extra_args or '(none)'}; {args.jobs} training run(s) at a time\n")
    spread_header = " FD spread between draws (std) |" if args.redraws > 1 else ""
    print(
        f"| method | FD_digits | per seed |{spread_header} digits covered | class histogram 0–9 (%) "
        "| training time per run (s) |"
    )
    print("|---|---|---|" + ("---|" if args.redraws > 1 else "") + "---|---|---|")
    for name, results in rows.items():
        distances = [r["fd"] for r in results]
        histogram = np.mean([r["histogram"] for r in results], axis=0) * 100
        seconds = [r["seconds"] for r in results if r["seconds"] is not None]
        spreads = [r["spread"] for r in results if r["spread"] is not None]
        spread = (f" {np.mean(spreads):.3f} |" if spreads else " — |") if args.redraws > 1 else ""
        per_seed = ", ".join(f"{fd:.3f}" for fd in distances)
        print(
            f"| {name} | {mean_std(distances, '.3f')} | {per_seed} |{spread}"
            f" {mean_std([r['covered'] for r in results], '.1f')} "
            f"| {' '.join(f'{share:.0f}' for share in histogram)} "
            f"| {mean_std(seconds, '.0f') if seconds else '—'} |"
        )
    plain = np.mean([r["fd"] for r in rows["GAN"]])
    for name in list(methods)[1:]:
        improvement = 1 - np.mean([r["fd"] for r in rows[name]]) / plain
        verdict = "met" if improvement >= TARGET_IMPROVEMENT else "NOT met"
        print(
            f"\n{name} changes FD_digits by {-100 * improvement:+.1f}% against the plain GAN "
            f"(target: −{100 * TARGET_IMPROVEMENT:.0f}% or better: {verdict})."
        )

    fig, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 4.4))
    for ax, (name, images) in zip(axes, grids.items(), strict=True):
        pixels = ((images[:, 0] + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()
        ax.imshow(image_grid([Image.fromarray(p) for p in pixels], num_columns=8), cmap="gray")
        ax.set(title=name, xticks=[], yticks=[])
    figure_path = os.path.join(args.output_dir, "digits_samples.png")
    fig.savefig(figure_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"\nFigure: {figure_path}")
    return rows


if __name__ == "__main__":
    main()
