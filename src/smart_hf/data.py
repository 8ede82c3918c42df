"""Image data sets for training score models and GANs: Hub data sets, image folders and the embedded digits.

Every source becomes an `ImageDataset` whose items are `{"images": (C, H, W) float tensor in [−1, 1]}`, plus
`"class_labels"` (an int) when class-conditional. Images are converted the same way whatever their file mode:

- Channels: everything is converted to the requested number of channels, 1 (PIL "L", ITU-R 601-2 luma) or
  3 ("RGB"), so grayscale, palette, CMYK and RGB files can be mixed. Images with transparency (RGBA, LA,
  palette with a transparent colour) are composited on a white background first, which is what a viewer shows
  on a white page; dropping alpha instead would expose whatever colour the transparent pixels happen to store.
- Depth: integer grayscale deeper than 8 bits is scaled from the range of its data type to 0..255 (PIL's own
  conversion would clip it at 255), the way scikit-image's `img_as_ubyte` does: unsigned b-bit values map
  0..2^b−1, signed ones clip below 0 and map 0..2^(b−1)−1. PIL keeps one container ("I;16", or "I" for 32-bit
  signed) and forgets the file's depth, so it is read from the file: TIFF states it (a 12-bit TIFF spans
  0..4095; an unsigned 32-bit one, which PIL reads as wrapped signed integers, spans 0..2^32−1), PNG and
  PGM hold at most 16 unsigned bits even when PIL opens them as "I", and an "I" image of unknown origin
  (made in memory) is PIL's signed 32-bit. An image that uses only a sliver of its type's range comes out
  dark; that is what it holds. Floating-point ("F") images are refused: a float file may hold [0, 1]
  intensities, 0..255, depths or photon counts, and guessing (or stretching each image to its own min-max)
  would silently change what is learned, so scale them as you mean and save 8- or 16-bit integers.
- Size: the shorter side is resized to `resolution` (bilinear, antialiased when shrinking), then the centre
  `resolution`×`resolution` square is cropped, like diffusers' `train_unconditional.py`.

Images are decoded as batches are drawn. Before the first step a training loop calls `verify_images`, which
decodes each once and reports every bad file in one error, and `check_batch_size`, which refuses fewer images
than one batch.

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
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from PIL import Image
from tqdm.auto import tqdm

DIGITS = "digits"
DIGITS_RESOLUTION = 8
IMAGE_COLUMN_NAMES = ("image", "img", "images")
LABEL_COLUMN_NAMES = ("label", "labels")


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


def _integer_depth(image: Image.Image) -> tuple[int, bool]:
    """(bits, signed) of an "I" or "I;16" image's values, which PIL does not keep (see the module doc)."""
    tags = getattr(image, "tag_v2", None)
    if image.format == "TIFF" and tags is not None and 258 in tags:  # BitsPerSample; SampleFormat 2: signed
        return tags[258][0], tags.get(339, (1,))[0] == 2
    if image.mode.startswith("I;16") or image.format in ("PNG", "PPM"):
        return 16, False
    return 32, True


def _to_8_bit(image: Image.Image) -> Image.Image:
    """An "L" image from integer grayscale `image`, its data type's range scaled to 0..255."""
    bits, signed = _integer_depth(image)
    values = np.asarray(image)
    if bits == 32 and not signed:
        values = values.view(np.uint32)  # PIL stores unsigned 32-bit values in wrapped signed integers
    scaled = values.astype(np.float64) * (255 / (2 ** (bits - signed) - 1))
    return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8))


def convert_channels(image: Image.Image, channels: int) -> Image.Image:
    """`image` as PIL "L" (`channels=1`) or "RGB" (`channels=3`); transparency is composited on white."""
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if image.mode == "I" or image.mode.startswith("I;16"):
        image = _to_8_bit(image)
    elif image.mode == "F":
        raise ValueError(
            "Floating-point ('F' mode) images have no defined value range; scale them to the range you mean "
            "and save them as 8- or 16-bit integers."
        )
    if image.mode in ("RGBA", "LA", "PA") or image.has_transparency_data:
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


def preprocess_image(image: Image.Image, resolution: int, channels: int) -> torch.Tensor:
    """A (channels, resolution, resolution) tensor in [−1, 1]: convert, resize shorter side, centre-crop."""
    return _resize_and_crop(convert_channels(image, channels), resolution)


def _resize_and_crop(image: Image.Image, resolution: int) -> torch.Tensor:
    """`preprocess_image` of an image already converted to "L" or "RGB"."""
    width, height = image.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    left, top = (new_size[0] - resolution) // 2, (new_size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    pixels = torch.from_numpy(np.array(image, dtype=np.float32)).reshape(resolution, resolution, -1)
    return pixels.permute(2, 0, 1) / 127.5 - 1.0


def _read_image(stored: dict | None, index: int, column: str, channels: int) -> Image.Image:
    """A stored image (`{"bytes", "path"}`, as `datasets.Image(decode=False)` holds it), decoded and converted
    to `channels`; else a `ValueError` that names the file (or the row) and why it cannot be used."""
    if stored is None:
        raise ValueError(f"Row {index} of the data set has no image in column {column!r}.")
    source = stored.get("path") or f"row {index} of column {column!r}"
    try:
        image = Image.open(io.BytesIO(stored["bytes"]) if stored.get("bytes") is not None else stored["path"])
        image.load()
    except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, ...
        raise ValueError(f"Cannot read the image {source}: {error or type(error).__name__}") from error
    with image:
        try:
            return convert_channels(image, channels)
        except ValueError as error:
            raise ValueError(f"Cannot use the image {source}: {error}") from error


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
        image = _read_image(row[self.image_column], index, self.image_column, self.channels)
        item: dict[str, torch.Tensor | int] = {"images": _resize_and_crop(image, self.resolution)}
        if self.label_column is not None:
            item["class_labels"] = int(row[self.label_column])
        return item


class _ImageProblems(torch.utils.data.Dataset):
    """Why each image of an `ImageDataset` cannot be used ("" when it can), for `verify_images`' workers."""

    def __init__(self, dataset: ImageDataset):
        self.images = dataset.data.select_columns([dataset.image_column])
        self.column = dataset.image_column
        self.channels = dataset.channels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> str:
        try:
            _read_image(self.images[index][self.column], index, self.column, self.channels)
        except ValueError as error:
            return str(error)
        return ""


def verify_images(dataset: ImageDataset, num_workers: int = 0, show_progress: bool = True) -> None:
    """Decode every image of `dataset` once and raise one `ValueError` listing each that cannot be used, and
    why, so bad files stop a run before training starts instead of at the step that first loads one.

    `num_workers` processes decode in parallel (as --dataloader_num_workers does for training); a progress bar
    counts the images unless `show_progress` is off (e.g. on all but the main process).
    """
    problems = _ImageProblems(dataset)
    batches = torch.utils.data.DataLoader(problems, batch_size=64, num_workers=num_workers, collate_fn=list)
    found = []
    with tqdm(total=len(problems), desc="Verifying images", unit="image", disable=not show_progress) as bar:
        for batch in batches:
            found.extend(problem for problem in batch if problem)
            bar.update(len(batch))
    if found:
        raise ValueError(
            f"{len(found)} of {len(problems)} images cannot be used; remove or replace them:\n  "
            + "\n  ".join(found)
        )


def check_batch_size(dataset: ImageDataset, batch_size: int) -> None:
    """Refuse a data set smaller than one batch: `image_batches` would then yield a single short batch per
    epoch, silently training at a smaller batch size (and BatchNorm statistics) than asked for."""
    if len(dataset) < batch_size:
        raise ValueError(
            f"The data set has {len(dataset)} images but --train_batch_size is {batch_size}: lower "
            f"--train_batch_size to at most {len(dataset)}, or add images (or raise --max_train_samples)."
        )


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

    Images are decoded lazily; a training loop calls `verify_images` (and `check_batch_size`) on the set it
    trains on, after any subsetting, to refuse bad files and too few images before the first step.
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
    path = os.path.expanduser(source)
    if os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(
        os.path.join(path, "dataset_dict.json")
    ):  # a folder written by `save_to_disk`
        loaded = datasets.load_from_disk(path)
        return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    if os.path.isfile(path):
        raise ValueError(
            f"--dataset_name {source!r} is a file; pass its folder, or a folder of images (--train_data_dir)."
        )
    if not os.path.isdir(path):
        _check_hub_id(source)
    try:
        return datasets.load_dataset(path, dataset_config_name, split="train", cache_dir=cache_dir)
    except ConnectionError as error:  # not cached, and offline or the Hub unreachable
        fix = (
            "unset HF_HUB_OFFLINE to download it"
            if datasets.config.HF_HUB_OFFLINE
            else f"check the network ({str(error).splitlines()[0]})"
        )
        raise ConnectionError(
            f"--dataset_name {source!r}: no local folder, and the Hub data set is neither cached nor "
            f"reachable; {fix}."
        ) from error


def _check_hub_id(name: str) -> None:
    """Refuse a name that is no local folder and cannot be a Hub id, before `load_dataset` retries the Hub.

    A Hub id is `name` or `owner/name` of letters, digits, '-', '_' and '.'; anything else ('./data', '~/x',
    'a/b/c') is a path. So is `owner/name` when `owner` is a local folder ('data/cifar' next to 'data/').
    """
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"--dataset_name {name!r}: no such folder (a Hub id is owner/name)."
        ) from None
    first = name.split("/")[0]
    if "/" in name and os.path.isdir(first):
        raise FileNotFoundError(
            f"--dataset_name {name!r}: no such folder, though {first!r} is (so this is read as a path; a Hub "
            "id is owner/name)."
        )


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
