"""Issue #24 for the data: deep images convert by their type's range, bad files and too few images are refused
before training, and a mistyped local --dataset_name is refused at once instead of going to the Hub."""

import io
import struct

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import constants
from PIL import Image

from smart_hf.data import check_batch_size, convert_channels, load_image_dataset, verify_images


def write_tiff(path, data: bytes, width: int, height: int, bits: int, sample_format: int):
    """A minimal uncompressed grayscale TIFF, for depths Pillow cannot write (unsigned 32-bit, 12-bit)."""
    tags = {256: width, 257: height, 258: bits, 259: 1, 262: 1, 273: 0, 277: 1, 278: height, 279: len(data)}
    tags[339] = sample_format  # 1 unsigned, 2 signed
    data_offset = 8 + 2 + 12 * len(tags) + 4
    tags[273] = data_offset
    ifd = b"".join(
        struct.pack("<HHI", tag, 4, 1) + struct.pack("<I", value) for tag, value in sorted(tags.items())
    )
    path.write_bytes(b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + struct.pack("<I", 0) + data)
    return path


def gray(image: Image.Image) -> list[int]:
    return np.asarray(convert_channels(image, 1)).ravel().tolist()


def test_32_bit_images_scale_by_their_type_range_not_as_16_bit(tmp_path):
    quarters = [0, 64, 128, 191, 255]  # 0, 1/4, 1/2, 3/4 and all of the range, as 8-bit
    signed = np.array([[0, 2**29, 2**30, 3 * 2**29, 2**31 - 1]], dtype=np.int32)
    assert gray(Image.fromarray(signed)) == quarters  # PIL's "I" made in memory: signed 32-bit
    Image.fromarray(signed - 2**29).save(tmp_path / "signed.tif")  # negatives clip to black
    assert gray(Image.open(tmp_path / "signed.tif")) == [0, 0, 64, 128, 191]
    unsigned = np.array([0, 2**30, 2**31, 3 * 2**30, 2**32 - 1], dtype="<u4")
    image = Image.open(write_tiff(tmp_path / "unsigned.tif", unsigned.tobytes(), 5, 1, 32, 1))
    assert image.mode == "I" and gray(image) == quarters  # PIL wraps values >= 2^31 to negatives


def test_images_that_pil_opens_as_i_or_i16_keep_their_file_depth(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(tmp_path / "sixteen.pgm")
    image = Image.open(tmp_path / "sixteen.pgm")
    assert image.mode == "I" and gray(image) == [0, 128, 255]  # PGM holds at most 16 bits
    twelve_bit = bytes([0xFF, 0xF8, 0x00])  # 4095 and 2048, packed
    image = Image.open(write_tiff(tmp_path / "twelve.tif", twelve_bit, 2, 1, 12, 1))
    assert image.mode == "I;16" and gray(image) == [255, 128]
    signed_sixteen = np.array([-5, 0, 32767], dtype="<i2").tobytes()
    assert gray(Image.open(write_tiff(tmp_path / "signed16.tif", signed_sixteen, 3, 1, 16, 2))) == [0, 0, 255]


def test_deep_images_reach_the_training_range_through_an_image_folder(tmp_path):
    pixels = np.array([0, 2**31, 2**30, 2**32 - 1], dtype="<u4")  # a 2×2 gradient: no resize at resolution 2
    (tmp_path / "images").mkdir()
    write_tiff(tmp_path / "images" / "gradient.tif", pixels.tobytes(), 2, 2, 32, 1)
    dataset = load_image_dataset(train_data_dir=str(tmp_path / "images"), resolution=2, channels=1)
    expected = torch.tensor([[[0, 128], [64, 255]]]) / 127.5 - 1
    torch.testing.assert_close(dataset[0]["images"], expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_mixed_modes_in_one_folder_convert_alike(tmp_path, channels):
    """The same mid-grey stored as RGB, L, RGBA, LA, palette, 16-bit PNG and 16-bit PGM is one tensor."""
    root = tmp_path / "mixed"
    root.mkdir()
    Image.new("RGB", (4, 4), (128, 128, 128)).save(root / "rgb.png")
    Image.new("L", (4, 4), 128).save(root / "l.png")
    Image.new("RGBA", (4, 4), (128, 128, 128, 255)).save(root / "rgba.png")
    Image.new("LA", (4, 4), (128, 255)).save(root / "la.png")
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([128, 128, 128, 0, 0, 0] + [0] * 762)
    palette.save(root / "p.png")
    Image.fromarray(np.full((4, 4), 128 * 257, dtype=np.uint16)).save(root / "sixteen.png")
    Image.fromarray(np.full((4, 4), 128 * 257, dtype=np.uint16)).save(root / "sixteen.pgm")
    dataset = load_image_dataset(train_data_dir=str(root), resolution=4, channels=channels)
    verify_images(dataset)
    assert len(dataset) == 7
    for i in range(7):
        torch.testing.assert_close(dataset[i]["images"], torch.full((channels, 4, 4), 128 / 127.5 - 1))


def test_verification_reports_every_bad_file_at_once_with_a_progress_bar(tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "good.png")
    png = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "text.png").write_text("not an image")
    dataset = load_image_dataset(train_data_dir=str(root), resolution=8)
    capsys.readouterr()
    with pytest.raises(ValueError) as error:
        verify_images(dataset)
    message = str(error.value)
    assert message.startswith("2 of 3 images cannot be used; remove or replace them:")
    assert "truncated.png: image file is truncated" in message and "text.png: cannot identify" in message
    assert "good.png" not in message.replace(str(root / "good.png"), "")
    assert "Verifying images" in capsys.readouterr().err
    (root / "truncated.png").unlink(), (root / "text.png").unlink()
    verify_images(load_image_dataset(train_data_dir=str(root), resolution=8), show_progress=False)
    assert "Verifying images" not in capsys.readouterr().err


def test_verification_decodes_the_images_of_a_saved_data_set(tmp_path):
    """Hub and `save_to_disk` data sets hold bytes; a row without a path is named by its index."""
    encoded = io.BytesIO()
    Image.new("L", (4, 4), 9).save(encoded, format="PNG")
    rows = [
        {"bytes": encoded.getvalue(), "path": None},
        {"bytes": b"junk", "path": None},
        None,
        {"bytes": encoded.getvalue()[:40], "path": "cut.png"},
    ]
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": rows}, features=features).save_to_disk(tmp_path / "saved")
    dataset = load_image_dataset(str(tmp_path / "saved"), resolution=4)
    with pytest.raises(ValueError) as error:
        verify_images(dataset, num_workers=1)
    lines = str(error.value).splitlines()
    assert lines[0] == "3 of 4 images cannot be used; remove or replace them:"
    assert lines[1].startswith("  Cannot read the image row 1 of column 'image': cannot identify")
    assert lines[2] == "  Row 2 of the data set has no image in column 'image'."
    assert lines[3].startswith("  Cannot read the image cut.png: ")


def test_float_images_are_refused_with_their_path(tmp_path):
    root = tmp_path / "floats"
    root.mkdir()
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(root / "depth.tif")
    with pytest.raises(ValueError, match=r"Cannot use the image .*depth\.tif: Floating-point \('F' mode\)"):
        verify_images(load_image_dataset(train_data_dir=str(root), resolution=4))


def test_a_data_set_smaller_than_one_batch_is_refused():
    dataset = load_image_dataset().subset(3, seed=0)
    with pytest.raises(ValueError) as error:
        check_batch_size(dataset, 64)
    assert str(error.value) == (
        "The data set has 3 images but --train_batch_size is 64: lower --train_batch_size to at most 3, "
        "or add images (or raise --max_train_samples)."
    )
    check_batch_size(dataset, 3)  # one full batch is enough


@pytest.fixture
def no_hub(monkeypatch):
    """Fail a test that reaches `datasets.load_dataset`: the name should have been refused before."""

    def load_dataset(*args, **kwargs):
        raise AssertionError(f"load_dataset{args} was called")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


@pytest.mark.parametrize("name", ["./my_data", "../my_data", "/no/such/data", "~/no-such-data", "a/b/c"])
def test_a_missing_local_dataset_folder_is_refused_at_once(no_hub, name):
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset(name, resolution=8)
    assert str(error.value) == f"--dataset_name {name!r}: no such folder (a Hub id is owner/name)."


def test_owner_slash_name_is_a_path_when_owner_is_a_local_folder(no_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_image_dataset("data/cifar", resolution=8)
    assert str(error.value) == (
        "--dataset_name 'data/cifar': no such folder, though 'data' is (so this is read as a path; a Hub id "
        "is owner/name)."
    )
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"'notes.txt' is a file; pass its folder"):
        load_image_dataset("notes.txt", resolution=8)


def test_a_home_relative_dataset_folder_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": [Image.new("L", (4, 4))]}, features=features).save_to_disk(
        tmp_path / "saved"
    )
    assert len(load_image_dataset("~/saved", resolution=4)) == 1


def test_an_uncached_hub_data_set_while_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError) as error:
        load_image_dataset("someone/not-cached", resolution=8, cache_dir=str(tmp_path))
    assert str(error.value) == (
        "--dataset_name 'someone/not-cached': no local folder, and the Hub data set is neither cached nor "
        "reachable; unset HF_HUB_OFFLINE to download it."
    )


def test_hub_ids_still_go_to_load_dataset(monkeypatch):
    calls = []

    def load_dataset(name, *args, **kwargs):
        calls.append(name)
        if name == "someone/unreachable":
            raise ConnectionError("Couldn't reach 'someone/unreachable' on the Hub (LocalEntryNotFoundError)")
        return datasets.Dataset.from_dict({"image": [Image.new("L", (4, 4))]})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    assert len(load_image_dataset("someone/images", resolution=4)) == 1
    assert len(load_image_dataset("cifar10", resolution=4)) == 1  # a canonical id without an owner
    with pytest.raises(ConnectionError, match=r"neither cached nor reachable; check the network \(Couldn't"):
        load_image_dataset("someone/unreachable", resolution=4)
    assert calls == ["someone/images", "cifar10", "someone/unreachable"]
