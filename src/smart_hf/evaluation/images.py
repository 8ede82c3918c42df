"""Batches of images in [−1, 1] for the metrics: from an image folder, a `smart_hf.data` data set, a pipeline.

Each function checks its input when called and returns a lazy iterator, so an empty folder fails at once while
50k images are decoded (or generated) one batch at a time. Files are preprocessed by `smart_hf.data` as for
training; generated images are rounded to 8 bits, as if saved to PNG, so a model and a folder of its saved
samples score the same.
"""

import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from PIL import Image, UnidentifiedImageError

from smart_hf.data import ImageDataset, preprocess_image


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under `folder`, recursively and sorted; warns about other files, raises when there is none.

    Hidden files and folders (".DS_Store", ".git/") are skipped silently.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"The image folder {folder} does not exist.")
    readable = {
        extension for extension, plugin in Image.registered_extensions().items() if plugin in Image.OPEN
    }
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    images = [path for path in files if path.suffix.lower() in readable]
    others = [path.relative_to(folder).as_posix() for path in files if path.suffix.lower() not in readable]
    if not images:
        found = f"; it holds only {len(others)} other files, e.g. {others[:3]}" if others else ""
        raise ValueError(f"The image folder {folder} contains no image files{found}.")
    if others:
        warnings.warn(
            f"Ignoring {len(others)} non-image files in {folder}, e.g. {others[:3]}.",
            UserWarning,
            stacklevel=2,
        )
    return images


def load_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """A (channels, resolution, resolution) tensor in [−1, 1], converted like the training data."""
    try:
        with Image.open(path) as image:
            image.load()
            return preprocess_image(image, resolution, channels)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read the image {path}: {error}") from error


def _take(available: int, num_images: int | None, source: str) -> int:
    if num_images is None:
        return available
    if not 1 <= num_images <= available:
        raise ValueError(
            f"Asked for {num_images} images, but {source} has {available} (pass 1 to {available})."
        )
    return num_images


def folder_images(
    folder: str | Path, resolution: int, channels: int, batch_size: int = 64, num_images: int | None = None
) -> Iterator[torch.Tensor]:
    """Batches of the first `num_images` (default: all) images of a folder, in sorted path order."""
    paths = list_image_files(folder)
    paths = paths[: _take(len(paths), num_images, f"the folder {folder}")]
    return (
        torch.stack([load_image(path, resolution, channels) for path in paths[start : start + batch_size]])
        for start in range(0, len(paths), batch_size)
    )


def dataset_images(
    dataset: ImageDataset, batch_size: int = 64, num_images: int | None = None
) -> Iterator[torch.Tensor]:
    """Batches of the first `num_images` (default: all) images of a data set."""
    count = _take(len(dataset), num_images, "the data set")
    return (
        torch.stack([dataset[index]["images"] for index in range(start, min(start + batch_size, count))])
        for start in range(0, count, batch_size)
    )


def generated_images(
    pipeline: DiffusionPipeline, num_images: int, batch_size: int = 64, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Batches of `num_images` images of a one-step pipeline (random classes when class-conditional)."""
    if num_images < 1 or batch_size < 1:
        raise ValueError(f"`num_images` and `batch_size` must be >= 1, got {num_images} and {batch_size}.")
    generator = torch.Generator().manual_seed(seed)

    def batches() -> Iterator[torch.Tensor]:
        for start in range(0, num_images, batch_size):
            size = min(batch_size, num_images - start)
            images = pipeline(batch_size=size, generator=generator, output_type="pt").images  # [0, 1]
            yield (images.float().cpu() * 255).round() / 127.5 - 1

    return batches()
