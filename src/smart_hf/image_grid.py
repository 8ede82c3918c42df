"""Tile generated images into one picture, for model cards and the `smart-hf generate` command."""

import math
from collections.abc import Sequence

from PIL import Image


def image_grid(
    images: Sequence[Image.Image], num_columns: int | None = None, min_tile_size: int = 64, padding: int = 2
) -> Image.Image:
    """Row-major grid of equally sized images on a black background, `num_columns` wide (default: square-ish).

    Tiles smaller than `min_tile_size` pixels are enlarged by an integer factor with nearest-neighbour
    resampling, so 8×8 or 32×32 samples stay crisp instead of blurred. Grayscale images give a grayscale grid.
    """
    if not images:
        raise ValueError("image_grid needs at least one image.")
    sizes = {image.size for image in images}
    if len(sizes) != 1:
        raise ValueError(f"All images must have the same size, got {sorted(sizes)}.")
    if num_columns is not None and num_columns < 1:
        raise ValueError(f"num_columns must be >= 1, got {num_columns}.")
    num_columns = min(num_columns or math.ceil(math.sqrt(len(images))), len(images))
    num_rows = math.ceil(len(images) / num_columns)
    width, height = sizes.pop()
    scale = max(1, math.ceil(min_tile_size / max(width, height)))
    tile_width, tile_height = width * scale, height * scale
    mode = "L" if all(image.mode == "L" for image in images) else "RGB"
    grid = Image.new(
        mode, (num_columns * (tile_width + padding) + padding, num_rows * (tile_height + padding) + padding)
    )
    for index, image in enumerate(images):
        row, column = divmod(index, num_columns)
        tile = image.convert(mode).resize((tile_width, tile_height), Image.Resampling.NEAREST)
        grid.paste(tile, (padding + column * (tile_width + padding), padding + row * (tile_height + padding)))
    return grid
