"""Image data sets for training score models and GANs: Hub data sets, image folders and the embedded digits.

Every source becomes an `ImageDataset` whose items are `{"images": (C, H, W) float tensor in [−1, 1]}`, plus
`"class_labels"` (an int) when class-conditional. Images are converted the same way whatever their file mode:

- Channels: everything is converted to the requested number of channels, 1 (PIL "L", ITU-R 601-2 luma) or
  3 ("RGB"), so grayscale, palette, CMYK and RGB files can be mixed. Images with transparency (RGBA, LA,
  palette with a transparent colour) are composited on a white background first, which is what a viewer shows
  on a white page; dropping alpha instead would expose whatever colour the transparent pixels happen to store.
  16-bit grayscale files are scaled from 0..65535 (PIL's own conversion would clip them at 255).
- Size: the shorter side is resized to `resolution` (bilinear, antialiased when shrinking), then the centre
  `resolution`×`resolution` square is cropped, like diffusers' `train_unconditional.py`.

The embedded default, `digits`, is scikit-learn's copy of the UCI handwritten digits (1,797 images, 8×8, 17
grey levels, labels 0–9, bright ink on black like MNIST): it ships inside scikit-learn, so it needs no
download. Its default resolution is the native 8×8. That is all the information the images hold —
upsampling to 16×16 adds no detail, only cost: 4× the pixels makes a small UNet's forward+backward pass
about 3× slower on a CPU (0.30 → 0.93 s for a batch of 64 on one core), and the same holds for the GAN that
SMaRt regularizes with it. Enlarged with nearest-neighbour resampling (as `smart_hf.image_grid` does), 8×8
digits are easy to read.
"""

import io
import os

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

DIGITS = "digits"
DIGITS_RESOLUTION = 8
IMAGE_COLUMN_NAMES = ("image", "img", "images")
LABEL_COLUMN_NAMES = ("label", "labels")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L")


def load_digits_dataset() -> datasets.Dataset:
    """scikit-learn's 8×8 digits as a `datasets.Dataset` with an `image` (grayscale) and a `label` column."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # values 0..16 → 0..255
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    return datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p) for p in pixels], "label": digits.target.tolist()}, features=features
    )


def convert_channels(image: Image.Image, channels: int) -> Image.Image:
    """`image` as PIL "L" (`channels=1`) or "RGB" (`channels=3`); transparency is composited on white."""
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray(
            np.rint(np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        )
    elif image.mode == "F":
        raise ValueError("Floating-point ('F' mode) images have no defined value range; save them as 8-bit.")
    if image.mode in ("RGBA", "LA", "PA") or image.has_transparency_data:
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


def preprocess_image(image: Image.Image, resolution: int, channels: int) -> torch.Tensor:
    """A (channels, resolution, resolution) tensor in [−1, 1]: convert, resize shorter side, centre-crop."""
    image = convert_channels(image, channels)
    width, height = image.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    left, top = (new_size[0] - resolution) // 2, (new_size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    pixels = torch.from_numpy(np.array(image, dtype=np.float32)).reshape(resolution, resolution, channels)
    return pixels.permute(2, 0, 1) / 127.5 - 1.0


class ImageDataset(torch.utils.data.Dataset):
    """Preprocessed images (and class labels) from a `datasets.Dataset` whose image column is not decoded.

    Files are decoded here rather than by `datasets`, so an unreadable one is reported with its path.
    """

    def __init__(
        self,
        data: datasets.Dataset,
        image_column: str,
        resolution: int,
        channels: int,
        label_column: str | None = None,
        num_classes: int | None = None,
    ):
        if resolution < 1:
            raise ValueError(f"`resolution` must be >= 1, got {resolution}.")
        if channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB), got {channels}.")
        self.data = data
        self.image_column = image_column
        self.label_column = label_column
        self.resolution = resolution
        self.channels = channels
        self.num_classes = num_classes

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)

    def __len__(self) -> int:
        return len(self.data)

    def subset(self, num_samples: int, seed: int) -> "ImageDataset":
        """`num_samples` rows drawn at random by `seed` (all rows when there are fewer), the way diffusers'
        `--max_train_samples` does: `shuffle(seed=seed).select(range(num_samples))`. The same seed gives the
        same rows, and a smaller subset of the same seed is contained in a larger one."""
        if num_samples < 1:
            raise ValueError(f"A subset needs at least one row, got num_samples={num_samples}.")
        rows = self.data.shuffle(seed=seed).select(range(min(num_samples, len(self))))
        return ImageDataset(
            rows, self.image_column, self.resolution, self.channels, self.label_column, self.num_classes
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        row = self.data[index]
        item: dict[str, torch.Tensor | int] = {"images": self._load_image(row[self.image_column], index)}
        if self.label_column is not None:
            item["class_labels"] = int(row[self.label_column])
        return item

    def _load_image(self, stored: dict | None, index: int) -> torch.Tensor:
        if stored is None:
            raise ValueError(f"Row {index} of the data set has no image in column {self.image_column!r}.")
        source = stored.get("path") or f"row {index} of column {self.image_column!r}"
        try:
            if stored.get("bytes") is not None:
                image = Image.open(io.BytesIO(stored["bytes"]))
            else:
                image = Image.open(stored["path"])
            image.load()
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise ValueError(f"Cannot read the image {source}: {error}") from error
        try:
            return preprocess_image(image, self.resolution, self.channels)
        except ValueError as error:
            raise ValueError(f"Cannot use the image {source}: {error}") from error


def load_image_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    resolution: int | None = None,
    channels: int | None = None,
    class_conditional: bool = False,
    dataset_config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | None = None,
) -> ImageDataset:
    """An `ImageDataset` from a Hub data set (or a `save_to_disk` folder), an image folder, or the digits.

    `dataset_name` is a Hub id, a local data set folder or `"digits"` (the default when neither `dataset_name`
    nor `train_data_dir` is given); `train_data_dir` is read with `load_dataset("imagefolder", data_dir=...)`,
    which takes class labels from subfolder names. `resolution` defaults to 8 for the digits and must be given
    otherwise; `channels` defaults to 1 for the digits and 3 otherwise. With `class_conditional`, labels come
    from `label_column`, else from a column named "label" or "labels".
    """
    if dataset_name is not None and train_data_dir is not None:
        raise ValueError(
            "Pass either a dataset name (--dataset_name) or a folder (--train_data_dir), not both."
        )
    source = train_data_dir or dataset_name or DIGITS
    is_digits = train_data_dir is None and source == DIGITS
    if resolution is None:
        if not is_digits:
            raise ValueError(f"Pass the training resolution (--resolution) for the data set {source!r}.")
        resolution = DIGITS_RESOLUTION
    channels = channels if channels is not None else (1 if is_digits else 3)

    data = _load_source(source, train_data_dir is not None, dataset_config_name, cache_dir)
    image_column = _find_image_column(data, image_column, source)
    num_classes = None
    if class_conditional:
        data, label_column, num_classes = _encode_labels(data, label_column, source)
    else:
        label_column = None
    if len(data) == 0:
        raise ValueError(f"The data set {source!r} has no rows.")
    columns = [image_column] if label_column is None else [image_column, label_column]
    data = data.select_columns(columns).cast_column(image_column, datasets.Image(decode=False))
    return ImageDataset(data, image_column, resolution, channels, label_column, num_classes)


def _load_source(
    source: str, is_folder: bool, dataset_config_name: str | None, cache_dir: str | None
) -> datasets.Dataset:
    if is_folder:
        if not os.path.isdir(source):
            raise FileNotFoundError(f"The image folder {source!r} (--train_data_dir) does not exist.")
        extensions = Image.registered_extensions()
        if not any(
            os.path.splitext(name)[1].lower() in extensions
            for _, _, names in os.walk(source)
            for name in names
        ):
            raise ValueError(f"The image folder {source!r} (--train_data_dir) contains no image files.")
        return datasets.load_dataset("imagefolder", data_dir=source, split="train", cache_dir=cache_dir)
    if source == DIGITS:
        return load_digits_dataset()
    if os.path.isfile(os.path.join(source, "state.json")) or os.path.isfile(
        os.path.join(source, "dataset_dict.json")
    ):  # a folder written by `save_to_disk`
        loaded = datasets.load_from_disk(source)
        return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    return datasets.load_dataset(source, dataset_config_name, split="train", cache_dir=cache_dir)


def _find_image_column(data: datasets.Dataset, image_column: str | None, source: str) -> str:
    features = data.features
    if image_column is not None:
        if image_column not in features:
            raise ValueError(
                f"The data set {source!r} has no column {image_column!r}; its columns are {list(features)}."
            )
        if not isinstance(features[image_column], datasets.Image):
            raise ValueError(
                f"Column {image_column!r} of {source!r} holds {features[image_column]}, not images; cast it "
                f"with `dataset.cast_column({image_column!r}, datasets.Image())` or choose another column."
            )
        return image_column
    candidates = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if not candidates:
        raise ValueError(
            f"The data set {source!r} has no image column; its columns are {list(features)}. "
            "Images must be a `datasets.Image` column (pass its name as --image_column)."
        )
    preferred = [name for name in candidates if name in IMAGE_COLUMN_NAMES]
    if len(candidates) > 1 and len(preferred) != 1:
        raise ValueError(
            f"The data set {source!r} has several image columns {candidates}; pick one with --image_column."
        )
    return preferred[0] if len(candidates) > 1 else candidates[0]


def _encode_labels(
    data: datasets.Dataset, label_column: str | None, source: str
) -> tuple[datasets.Dataset, str, int]:
    """The data (string labels encoded as a `ClassLabel`), the label column and the number of classes."""
    columns = list(data.features)
    if label_column is None:
        label_column = next((name for name in LABEL_COLUMN_NAMES if name in columns), None)
        if label_column is None:
            raise ValueError(
                f"Class-conditional training needs class labels, but the data set {source!r} has no 'label' "
                f"or 'labels' column (its columns are {columns}). Pass --label_column, put each class of an "
                "image folder in its own subfolder, or train unconditionally."
            )
    elif label_column not in columns:
        raise ValueError(
            f"The data set {source!r} has no column {label_column!r}; its columns are {columns}."
        )

    feature = data.features[label_column]
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        data = data.class_encode_column(label_column)
        feature = data.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return data, label_column, feature.num_classes
    if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))):
        raise ValueError(
            f"Column {label_column!r} of {source!r} holds {feature}; class labels must be integers."
        )
    values = data.unique(label_column)
    if None in values or min(values) < 0:
        raise ValueError(
            f"Column {label_column!r} of {source!r} has missing or negative labels; use 0, 1, 2, ..."
        )
    return data, label_column, max(values) + 1
