"""`smart-hf evaluate`: models and image folders against the digits, cached references, bad input."""

import json
import sys

import numpy as np
import pytest
import torch

from smart_hf import cli
from smart_hf.data import load_digits_dataset
from smart_hf.evaluation import FeatureStatistics, runner
from smart_hf.models import DCGANGenerator


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained 8×8 grayscale generator saved with save_pretrained."""
    folder = tmp_path_factory.mktemp("generator")
    torch.manual_seed(0)
    DCGANGenerator(
        latent_dim=8, out_channels=1, resolution=8, base_channels=4, max_channel_multiplier=2
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """300 real digits as PNG files, in two subfolders."""
    folder = tmp_path_factory.mktemp("digits")
    for index, image in enumerate(load_digits_dataset().select(range(300))["image"]):
        (folder / f"part{index % 2}").mkdir(exist_ok=True)
        image.save(folder / f"part{index % 2}" / f"{index:04d}.png")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """--reference-stats options shared by the tests, so the digits' features are computed once per metric."""
    folder = tmp_path_factory.mktemp("cache") / "not yet created"
    return {"fd": ["--reference-stats", folder / "fd.npz"], "pr": ["--reference-stats", folder / "pr.npz"]}


def evaluate(capsys, *argv) -> dict:
    assert cli.main(["evaluate", *map(str, argv)]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def evaluate_error(capsys, *argv) -> str:
    assert cli.main(["evaluate", *map(str, argv)]) == 1
    return capsys.readouterr().err


def test_model_against_the_digits_with_a_cached_reference(model, cache, tmp_path, capsys, monkeypatch):
    argv = [model, "--reference", "digits", "--metric", "fd_digits", "--num-samples", 100, *cache["fd"]]
    first = evaluate(capsys, *argv)
    assert first["metric"] == "fd_digits" and first["feature_space"] == "digits_classifier"
    assert (first["num_samples"], first["num_reference"]) == (100, 1797)
    assert np.isfinite(first["fd_digits"]) and first["fd_digits"] > 50  # an untrained generator
    assert FeatureStatistics.load(cache["fd"][1]).metadata["reference"] == "digits"

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference should come from the cache")

    monkeypatch.setattr(runner, "reference_images", no_reference)
    assert evaluate(capsys, *argv) == first
    # A cache computed for another reference, or for another metric, is refused.
    error = evaluate_error(capsys, model, "--reference", tmp_path, "--metric", "fd_digits", *cache["fd"])
    assert "was computed with" in error and "delete it" in error
    error = evaluate_error(capsys, model, "--reference", "digits", "--metric", "pr", *cache["fd"])
    assert "holds no features" in error


def test_real_digits_score_better_than_an_untrained_model(model, digit_folder, cache, tmp_path, capsys):
    fd_cache, pr_cache = cache["fd"], cache["pr"]
    real = evaluate(capsys, digit_folder, "--reference", "digits", "--metric", "fd_digits", *fd_cache)
    fake = evaluate(
        capsys, model, "--reference", "digits", "--metric", "fd_digits", "--num-samples", 300, *fd_cache
    )
    assert real["num_samples"] == fake["num_samples"] == 300
    assert real["fd_digits"] < fake["fd_digits"] / 5

    output = tmp_path / "pr.json"
    real_pr = evaluate(
        capsys, digit_folder, "--reference", "digits", "--metric", "pr", "--output", output, *pr_cache
    )
    fake_pr = evaluate(
        capsys, model, "--reference", "digits", "--metric", "pr", "--num-samples", 300, *pr_cache
    )
    assert (fake_pr["num_samples"], fake_pr["num_reference"], fake_pr["k"]) == (300, 1797, 3)
    assert real_pr["precision"] > 0.8 and real_pr["recall"] > 0.5
    assert fake_pr["precision"] < real_pr["precision"]
    assert json.loads(output.read_text()) == real_pr


def test_dinov2_between_folders(digit_folder, tmp_path, capsys):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(
        Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2)
    ).save_pretrained(tmp_path / "dinov2")
    argv = [
        digit_folder / "part0",
        "--reference",
        digit_folder / "part1",
        "--dinov2-model",
        tmp_path / "dinov2",
    ]
    assert "--resolution" in evaluate_error(capsys, *argv, "--metric", "fd_dinov2")
    result = evaluate(capsys, *argv, "--metric", "fd_dinov2", "--resolution", 8, "--batch-size", 50)
    assert result["feature_space"] == f"dinov2_cls({tmp_path / 'dinov2'})" and np.isfinite(
        result["fd_dinov2"]
    )
    assert "--features" in evaluate_error(capsys, *argv, "--metric", "pr", "--resolution", 8)


def test_folder_errors(cache, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "contains no image files" in evaluate_error(
        capsys, tmp_path / "empty", "--reference", "digits", "--metric", "fd_digits"
    )
    assert "neither a folder nor a Hub id" in evaluate_error(
        capsys, tmp_path / "missing", "--reference", "digits", "--metric", "pr"
    )
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    assert "only 1 other files" in evaluate_error(
        capsys, tmp_path / "text", "--reference", "digits", "--metric", "fd_digits"
    )
    (tmp_path / "text" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="Ignoring 1 non-image files"):
        error = evaluate_error(
            capsys, tmp_path / "text", "--reference", "digits", "--metric", "fd_digits", *cache["fd"]
        )
    assert "Cannot read the image" in error and "broken.png" in error


def test_non_image_files_are_reported(digit_folder, cache, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted((digit_folder / "part0").iterdir())[:20]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "metadata.csv").write_text("file_name\n")
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden: skipped silently
    with pytest.warns(UserWarning) as warned:
        result = evaluate(capsys, folder, "--reference", "digits", "--metric", "fd_digits", *cache["fd"])
    messages = [str(warning.message) for warning in warned]
    assert any(
        "Ignoring 1 non-image files" in message and "['metadata.csv']" in message for message in messages
    )
    # Fewer images than the 64 feature dimensions: warned about, still a finite number.
    assert any("20 samples of 64-d features give a singular covariance" in message for message in messages)
    assert result["num_samples"] == 20 and np.isfinite(result["fd_digits"])


def test_fid_without_pytorch_fid(model, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    error = evaluate_error(
        capsys, model, "--reference", "digits", "--metric", "fid", "--inception-weights", "w.pth"
    )
    assert "pip install pytorch-fid (needs torchvision)" in error


def test_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--reference-stats", "fd_dinov2", "--inception-weights"))


def test_bad_options(model, capsys):
    assert "8×8" in evaluate_error(
        capsys, model, "--reference", "digits", "--metric", "fd_digits", "--resolution", 16
    )
    assert "applies to 'pr' only" in evaluate_error(
        capsys, model, "--reference", "digits", "--metric", "fid", "--features", "digits"
    )
