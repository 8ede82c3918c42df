import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from smart_hf import data
from smart_hf.data import convert_channels, load_image_dataset, preprocess_image


def save_image(path, mode, size=(6, 4), color=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, color if color is not None else 0)
    image.save(path)
    return path


def test_digits_are_the_default_native_8x8_grayscale_with_labels():
    dataset = load_image_dataset(class_conditional=True)
    digits = load_digits()
    assert len(dataset) == 1797 and dataset.sample_shape == (1, 8, 8) and dataset.num_classes == 10
    item = dataset[5]
    expected = torch.from_numpy(np.rint(digits.images[5] * 255 / 16) / 127.5 - 1).float()
    torch.testing.assert_close(item["images"][0], expected)
    assert item["class_labels"] == digits.target[5]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert (
        batch["images"].shape == (4, 1, 8, 8) and batch["class_labels"].tolist() == digits.target[:4].tolist()
    )


def test_digits_can_be_upsampled_to_rgb_and_are_unlabelled_by_default():
    item = load_image_dataset("digits", resolution=16, channels=3)[0]
    assert set(item) == {"images"} and item["images"].shape == (3, 16, 16)
    assert item["images"].min() >= -1 and item["images"].max() <= 1
    torch.testing.assert_close(item["images"][0], item["images"][2])


def test_preprocess_resizes_the_shorter_side_then_center_crops():
    image = Image.new("L", (30, 10), 0)
    image.paste(255, (10, 0, 20, 10))  # a white middle third between black thirds
    pixels = preprocess_image(image, resolution=5, channels=1)
    assert pixels.shape == (1, 5, 5)
    torch.testing.assert_close(pixels[:, :, 1:4], torch.ones(1, 5, 3))  # the crop keeps the middle


def test_channel_conversion_composites_transparency_on_white():
    transparent_red = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert convert_channels(transparent_red, 3).getpixel((0, 0)) == (255, 255, 255)
    half_black = Image.new("LA", (2, 2), (0, 128))
    assert convert_channels(half_black, 1).getpixel((0, 0)) == 127
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 1
    assert convert_channels(palette, 3).getpixel((0, 0)) == (255, 255, 255)
    sixteen_bit = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert convert_channels(sixteen_bit, 1).getpixel((0, 0)) == 255
    with pytest.raises(ValueError, match="'F' mode"):
        convert_channels(Image.new("F", (2, 2)), 1)
    with pytest.raises(ValueError, match="must be 1 .* or 3"):
        convert_channels(transparent_red, 4)


def test_image_folder_with_mixed_modes_and_class_subfolders(tmp_path):
    root = tmp_path / "images"
    save_image(root / "cats" / "rgb.png", "RGB", color=(255, 0, 0))
    save_image(root / "cats" / "gray.png", "L", color=128)
    save_image(root / "dogs" / "rgba.png", "RGBA", color=(0, 0, 255, 0))
    save_image(root / "dogs" / "palette.gif", "P", color=3)
    dataset = load_image_dataset(
        train_data_dir=str(root), resolution=4, class_conditional=True, cache_dir=str(tmp_path / "cache")
    )
    assert len(dataset) == 4 and dataset.num_classes == 2 and dataset.sample_shape == (3, 4, 4)
    items = {tuple(dataset[i]["images"][:, 0, 0].tolist()): dataset[i]["class_labels"] for i in range(4)}
    assert items[(1.0, -1.0, -1.0)] == 0  # red, cats
    assert items[(1.0, 1.0, 1.0)] == 1  # transparent blue composited on white, dogs


def test_corrupt_image_is_named(tmp_path):
    save_image(tmp_path / "images" / "good.png", "RGB")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    dataset = load_image_dataset(
        train_data_dir=str(tmp_path / "images"), resolution=4, cache_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match=r"Cannot read the image .*broken\.png"):
        [dataset[i] for i in range(len(dataset))]


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="'missing' .* does not exist"):
        load_image_dataset(train_data_dir="missing", resolution=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty' .* contains no image files"):
        load_image_dataset(train_data_dir=str(tmp_path / "empty"), resolution=4, cache_dir=str(tmp_path))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="notes' .* contains no image files"):
        load_image_dataset(train_data_dir=str(tmp_path / "notes"), resolution=4, cache_dir=str(tmp_path))


def test_conditional_training_without_labels_is_refused(tmp_path):
    save_image(tmp_path / "flat" / "a.png", "RGB")
    with pytest.raises(ValueError, match=r"needs class labels.*columns are \['image'\]"):
        load_image_dataset(
            train_data_dir=str(tmp_path / "flat"),
            resolution=4,
            class_conditional=True,
            cache_dir=str(tmp_path),
        )


def test_hub_dataset_by_name_with_string_labels(monkeypatch):
    calls = []

    def fake_load_dataset(name, config_name=None, split=None, cache_dir=None):
        calls.append((name, config_name, split))
        images = [Image.new("RGB", (8, 8), (0, 255, 0)), Image.new("L", (8, 8), 255)]
        return datasets.Dataset.from_dict(
            {"img": images, "labels": ["bird", "cat"], "caption": ["a", "b"]},
            features=datasets.Features(
                {
                    "img": datasets.Image(),
                    "labels": datasets.Value("string"),
                    "caption": datasets.Value("string"),
                }
            ),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset = load_image_dataset("someone/birds-and-cats", resolution=4, channels=1, class_conditional=True)
    assert calls == [("someone/birds-and-cats", None, "train")]
    assert dataset.num_classes == 2 and [dataset[i]["class_labels"] for i in range(2)] == [0, 1]
    assert dataset[0]["images"].shape == (1, 4, 4)


def test_saved_dataset_folder_with_integer_labels(tmp_path):
    images = [Image.new("L", (8, 8), v) for v in (0, 255)]
    features = datasets.Features({"picture": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"picture": images, "label": [0, 4]}, features=features).save_to_disk(
        tmp_path / "d"
    )
    dataset = load_image_dataset(str(tmp_path / "d"), resolution=8, class_conditional=True)
    assert dataset.num_classes == 5 and dataset[1]["class_labels"] == 4
    assert dataset[1]["images"].shape == (3, 8, 8) and dataset[1]["images"].min() == 1.0


def test_data_set_without_an_image_column_lists_its_columns(tmp_path):
    datasets.Dataset.from_dict({"pixels": [[0, 1]], "label": [0]}).save_to_disk(tmp_path / "d")
    with pytest.raises(ValueError, match=r"no image column; its columns are \['pixels', 'label'\]"):
        load_image_dataset(str(tmp_path / "d"), resolution=8)
    with pytest.raises(ValueError, match="holds .*not images"):
        load_image_dataset(str(tmp_path / "d"), resolution=8, image_column="pixels")


def test_ambiguous_or_missing_settings_are_refused():
    with pytest.raises(ValueError, match="not both"):
        load_image_dataset("digits", train_data_dir="somewhere")
    with pytest.raises(ValueError, match="--resolution"):
        load_image_dataset("someone/a-dataset")
    with pytest.raises(ValueError, match="must be 1 .* or 3"):
        load_image_dataset(channels=2)
    assert data.DIGITS_RESOLUTION == 8


def test_missing_image_in_a_row_is_named(tmp_path):
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": [Image.new("L", (4, 4)), None]}, features=features).save_to_disk(
        tmp_path
    )
    dataset = load_image_dataset(str(tmp_path), resolution=4)
    assert dataset[0]["images"].shape == (3, 4, 4)
    with pytest.raises(ValueError, match="Row 1 of the data set has no image in column 'image'"):
        dataset[1]


def test_subset_is_seeded_nested_and_clamped():
    """`ImageDataset.subset`, behind --max_train_samples: diffusers' `shuffle(seed).select(range(n))`."""
    dataset = load_image_dataset(class_conditional=True)
    small, again, large = dataset.subset(20, seed=0), dataset.subset(20, seed=0), dataset.subset(60, seed=0)
    pixels = [torch.stack([item["images"] for item in subset]) for subset in (small, again, large)]
    assert len(small) == 20 and len(large) == 60
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[0], pixels[2][:20])  # same seed, nested
    other = torch.stack([item["images"] for item in dataset.subset(20, seed=1)])
    assert not torch.equal(pixels[0], other)
    assert small.sample_shape == (1, 8, 8) and small.num_classes == 10
    assert set(small[0]) == {"images", "class_labels"}
    assert len(dataset.subset(5000, seed=0)) == 1797  # all rows when there are fewer
    with pytest.raises(ValueError, match="at least one row"):
        dataset.subset(0, seed=0)
