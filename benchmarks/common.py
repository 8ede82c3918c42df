"""What the benchmark scripts share: paths, training runs, finished runs' metrics, job pools, tables, judges
and figures, so that every script trains, scores and reports alike."""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from PIL import Image  # noqa: E402

from smart_hf import hub  # noqa: E402
from smart_hf.data import DIGITS, load_image_dataset  # noqa: E402
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics, frechet_distance  # noqa: E402
from smart_hf.evaluation.images import dataset_images, generated_images  # noqa: E402
from smart_hf.image_grid import image_grid  # noqa: E402
from smart_hf.pipelines import SmartOneStepPipeline  # noqa: E402
from smart_hf.toy2d import TOY_DATASETS, ToyDataset  # noqa: E402

Item = TypeVar("Item")
Result = TypeVar("Result")
Panel = TypeVar("Panel")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO_ROOT, "training", "train_smart_gan.py")
CONFIGS = os.path.join(REPO_ROOT, "training", "configs")
SCORE_MODELS = os.path.join(REPO_ROOT, "src", "smart_hf", "assets", "score_models")
TOY_HEADER = [
    "method",
    "modes covered",
    "high-quality %",
    "sliced W1",
    "per-seed modes",
    "wall time per run (s)",
]
NUM_DIGIT_CLASSES = 10
COVERED_SHARE = 0.5 / NUM_DIGIT_CLASSES  # a digit is covered at half its fair share of the samples
GRID_IMAGES = 64


def argument_parser(description: str) -> argparse.ArgumentParser:
    """A parser whose --help shows the script's docstring as written, usage examples included."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def folder_name(name: str) -> str:
    """A method's name as a folder: runs of characters other than letters, digits, '.', '-' and '_' made one
    '_' ("GAN + SMaRt (λ 0.1)" -> "GAN_SMaRt_0.1")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def toy_mixtures(parser: argparse.ArgumentParser, names: list[str]) -> list[str]:
    """--mixtures as given (names of `TOY_DATASETS`, or "all"); an unknown name stops the parser."""
    mixtures = list(TOY_DATASETS) if names == ["all"] else names
    unknown = [name for name in mixtures if name not in TOY_DATASETS]
    if unknown:
        parser.error(f"Unknown mixtures {unknown}: choose from {list(TOY_DATASETS)} or 'all'.")
    return mixtures


def parse_method(spec: str) -> tuple[str, list[str]]:
    """`--method NAME=FLAGS` -> (NAME, the flags split as a shell would)."""
    name, separator, flags = spec.partition("=")
    if not separator or not folder_name(name):
        raise argparse.ArgumentTypeError(
            f"--method takes NAME=FLAGS, e.g. 'wide t=--smart_t_max 400'; got {spec!r}"
        )
    return name.strip(), shlex.split(flags)


def run_training_script(args: list[str], single_thread: bool = False) -> None:
    """Runs a training script (`args`: its path, then its flags) in a fresh Python process with its output
    discarded; a failure raises with the end of its stderr."""
    command = [sys.executable, *args]
    env = {**os.environ, "TQDM_DISABLE": "1", **({"OMP_NUM_THREADS": "1"} if single_thread else {})}
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Training failed: {' '.join(command)}\n{result.stderr[-3000:]}")


def read_metrics(run_dir: str) -> dict:
    """The metrics.json of a finished run of training/train_smart_gan.py: its results and, under "config", its
    settings."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: pass the output folder of a finished run of training/train_smart_gan.py."
        )
    with open(path) as f:
        return json.load(f)


def train_in_subprocess(flags: list[str], output_dir: str, single_thread: bool = False) -> dict:
    """One run of training/train_smart_gan.py in a fresh process (a fresh run: whatever `output_dir` held is
    deleted): its metrics.json plus the wall time."""
    start = time.time()
    run_training_script(
        [TRAIN_SCRIPT, *flags, "--output_dir", output_dir, "--overwrite_output_dir"], single_thread
    )
    return {**read_metrics(output_dir), "wall_seconds": time.time() - start}


def train_in_process(argv: list[str]) -> dict:
    """One GAN training run in this process, from train_smart_gan.py's flags: its results plus the wall
    time."""
    # Imported here: only the scripts that train in this process need the training stack.
    from smart_hf.training.config import parse_gan_args
    from smart_hf.training.gan import train_gan

    start = time.time()
    results = train_gan(parse_gan_args([*argv, "--overwrite_output_dir"]))
    return {**results, "wall_seconds": time.time() - start}


def run_jobs(function: Callable[[Item], Result], items: Iterable[Item], jobs: int) -> Iterator[Result]:
    """`function` of each item, in order, `jobs` at a time in threads (for jobs that wait on a subprocess)."""
    with ThreadPoolExecutor(jobs) as pool:
        yield from pool.map(function, items)


def mean_std(values: Iterable[float], fmt: str) -> str:
    """Mean ± std (the population std, as over seeds), each in the format `fmt`, e.g. ".2f"."""
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def markdown_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A markdown table, ready to paste into the README."""
    lines = ["| " + " | ".join(map(str, cells)) + " |" for cells in [header, *rows]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])


def true_samples(dataset: ToyDataset) -> torch.Tensor:
    """2,500 fresh samples of the data (seed 123): the toy tables' "true data" row."""
    return dataset.sample(2500, generator=torch.Generator().manual_seed(123))


def toy_table(rows: dict[str, list[dict]]) -> str:
    """The toy table: per method, the mean ± std over its runs' toy metrics and wall times."""
    table = []
    for label, results in rows.items():
        modes = [result["modes_covered"] for result in results]
        wall = [result["wall_seconds"] for result in results if "wall_seconds" in result]
        table.append(
            [
                label,
                f"{mean_std(modes, '.1f')} / {results[0]['num_modes']}",
                mean_std([result["high_quality_percent"] for result in results], ".1f"),
                mean_std([result["sliced_wasserstein"] for result in results], ".3f"),
                ", ".join(map(str, modes)),
                mean_std(wall, ".0f") if wall else "—",
            ]
        )
    return markdown_table(TOY_HEADER, table)


def eval_latents(config: dict) -> torch.Tensor:
    """The latents a toy run scored its final generator on: its --num_eval_samples, drawn from its seed."""
    seeded = torch.Generator().manual_seed(config["seed"])
    return torch.randn(config["num_eval_samples"], config["latent_dim"], generator=seeded)


def real_digits() -> torch.Tensor:
    """All 1,797 embedded digits, (1797, 1, 8, 8) in [−1, 1]."""
    return torch.cat(list(dataset_images(load_image_dataset(DIGITS))))


def sample_images(run_dir: str, num_samples: int, seed: int) -> torch.Tensor:
    """8-bit images in [−1, 1] from the generator of a training output folder (its EMA weights if any)."""
    pipeline = SmartOneStepPipeline(gan=hub.load_generator(run_dir).eval())
    return torch.cat(list(generated_images(pipeline, num_samples, seed=seed)))


def judge_digits(
    extractor: DigitsFeatureExtractor, images: torch.Tensor, reference: FeatureStatistics
) -> dict:
    """FD_digits to `reference`, the histogram (fractions) of the predicted digits, and the digits covered."""
    histogram = torch.bincount(extractor.predict(images), minlength=NUM_DIGIT_CLASSES).float() / len(images)
    statistics = FeatureStatistics.from_features(extractor.extract(images))
    return {
        "fd": frechet_distance(statistics, reference),
        "histogram": histogram.numpy(),
        "covered": int((histogram >= COVERED_SHARE).sum()),
    }


def digits_grid(images: torch.Tensor) -> Image.Image:
    """The first 64 images (first channel, in [−1, 1]) as an 8-bit grayscale grid of 8 columns."""
    pixels = ((images[:GRID_IMAGES, 0] + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()
    return image_grid([Image.fromarray(tile) for tile in pixels], num_columns=8)


def draw_digits(ax: Axes, images: torch.Tensor) -> None:
    ax.imshow(digits_grid(images), cmap="gray")


def point_drawer(dataset: ToyDataset) -> Callable[[Axes, np.ndarray], None]:
    """Draws 2-D samples as a scatter on the square that holds the data set's modes with a 40% margin."""
    limit = float(dataset.means.abs().max()) * 1.4

    def draw(ax: Axes, points: np.ndarray) -> None:
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")

    return draw


def save_panels(
    panels: dict[str, Panel], draw: Callable[[Axes, Panel], None], path: str, panel_size: tuple[float, float]
) -> None:
    """A figure of one titled panel per entry, side by side: the real data, then each method's samples."""
    width, height = panel_size
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, (title, panel) in zip(axes[0], panels.items(), strict=True):
        draw(ax, panel)
        ax.set(title=title, xticks=[], yticks=[])
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def synchronize(device: torch.device | str) -> None:
    """Waits for the work queued on a CUDA device, so that a timer stops when the work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
