"""Digits benchmark: plain GAN vs GAN + SMaRt on the embedded 8×8 digits, at the same budget and seeds.

Both methods train with training/train_smart_gan.py from the digits preset (training/configs/digits.yaml, the
recipe of `make demo`) and differ only in --smart_weight (0: the plain GAN). Each trained generator (its EMA
weights, as exported) draws --num_samples images, judged in the feature space of smart_hf's small digits
classifier (`smart_hf.evaluation`):

- FD_digits: the Fréchet distance to the 1,797 digits (lower is better). It is not comparable with Inception
  FID. The row "real digits" is the FD between two random halves of the data: the floor set by sample size.
- classes: the histogram of the classifier's predictions over the ten digits; a digit is covered when it gets
  at least half of its fair share (5% of the samples).

Prints a markdown table and writes sample grids side by side (real digits, then each method's first seed).

    python benchmarks/digits.py                                   # seeds 0 1 2, the preset's budget
    python benchmarks/digits.py --jobs 2                          # two runs at a time, one thread each
    python benchmarks/digits.py --seeds 0 1 --extra_args "--max_train_steps 1500"
    python benchmarks/digits.py --seeds 0 --smart_weights 0.3 1 3 --jobs 2     # a lambda sweep
"""

import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

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


def run_training(flags: list[str], output_dir: str, threads: int | None) -> float:
    """Trains one generator in a subprocess; returns its wall time in seconds."""
    command = [sys.executable, TRAIN_SCRIPT, "--config", PRESET, *flags, "--output_dir", output_dir]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    start = time.time()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if completed.returncode:
        raise RuntimeError(f"Training failed ({' '.join(command)}):\n{completed.stderr[-3000:]}")
    return time.time() - start


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_samples", type=int, default=2000, help="Generated images per run.")
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
    args = parser.parse_args()

    extractor = DigitsFeatureExtractor()
    real = torch.cat(list(dataset_images(load_image_dataset(DIGITS))))
    reference = FeatureStatistics.from_features(extractor.extract(real))
    halves = torch.randperm(len(real), generator=torch.Generator().manual_seed(0)).chunk(2)
    floor = FeatureStatistics.from_features(extractor.extract(real[halves[0]]))
    real_row = judge(extractor, real[halves[1]], floor)
    rows = {"real digits": [{**real_row, "seconds": None}]}
    grids = {"real digits": real[:64]}
    methods = {"GAN": ["--smart_weight", "0"]}
    for weight in args.smart_weights or [None]:  # None: the preset's lambda
        name = "GAN + SMaRt" if weight is None else f"GAN + SMaRt (λ {weight:g})"
        methods[name] = [] if weight is None else ["--smart_weight", f"{weight:g}"]
    runs = [(name, seed) for name in methods for seed in args.seeds]

    def train(run: tuple[str, int]) -> float:
        name, seed = run
        flags = ["--seed", str(seed), *methods[name], *shlex.split(args.extra_args)]
        seconds = run_training(flags, run_dir(args.output_dir, *run), 1 if args.jobs > 1 else None)
        print(f"trained {name} seed {seed} in {seconds:.0f} s", flush=True)
        return seconds

    with ThreadPoolExecutor(args.jobs) as pool:
        wall_times = dict(zip(runs, pool.map(train, runs), strict=True))
    for name, seed in runs:
        images = sample(run_dir(args.output_dir, name, seed), args.num_samples, seed)
        result = {**judge(extractor, images, reference), "seconds": wall_times[name, seed]}
        rows.setdefault(name, []).append(result)
        summary = f"FD_digits {result['fd']:.3f}, {result['covered']}/10 digits, {result['seconds']:.0f} s"
        print(f"{name} seed {seed}: {summary}", flush=True)
        if seed == args.seeds[0]:
            grids[name] = images[:64]

    print(
        f"\ndigits, seeds {args.seeds}, {args.num_samples} samples per run, preset {os.path.relpath(PRESET)}"
    )
    print(f"extra args: {args.extra_args or '(none)'}; {args.jobs} training run(s) at a time\n")
    print(
        "| method | FD_digits | per seed | digits covered | class histogram 0–9 (%) | wall time per run (s) |"
    )
    print("|---|---|---|---|---|---|")
    for name, results in rows.items():
        distances = [r["fd"] for r in results]
        histogram = np.mean([r["histogram"] for r in results], axis=0) * 100
        seconds = [r["seconds"] for r in results if r["seconds"] is not None]
        print(
            f"| {name} | {mean_std(distances, '.3f')} | {', '.join(f'{fd:.3f}' for fd in distances)} "
            f"| {mean_std([r['covered'] for r in results], '.1f')} "
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
    print(f"\nFigure: {figure_path}")


if __name__ == "__main__":
    main()
