"""The `smart-hf` command line: help, generate, export and push (patched, offline)."""

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import smart_hf
from smart_hf import cli, hub
from smart_hf.models import DCGANDiscriminator, DCGANGenerator, ResNetGenerator
from tests.fake_hub import FakeHub

TINY = {"latent_dim": 8, "resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}


@pytest.fixture(scope="module")
def training_output(tmp_path_factory):
    """A folder shaped like a training run's output: generator/ and metrics.json with the run's config."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    ResNetGenerator(num_classes=3, **TINY).save_pretrained(folder / "generator")
    results = {
        "fid": 31.5,
        "train_seconds": 12.0,
        "config": {"score_model": "google/ddpm-cifar10-32", "seed": 1},
    }
    (folder / "metrics.json").write_text(json.dumps(results))
    return folder


@pytest.fixture(scope="module")
def exported(training_output, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "export"
    argv = ["export", str(training_output), "--out", str(out), "--dataset", "cifar10", "--num-samples", "3"]
    assert cli.main(argv) == 0
    return out


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in ("generate", "export", "push"))


def test_building_the_parser_imports_no_heavy_library():
    """`smart-hf --help` answers at once: torch, diffusers and gradio load only when a command runs."""
    script = (
        "import sys, smart_hf.cli; smart_hf.cli.build_parser(); "
        "print(sorted({'torch', 'diffusers', 'gradio'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "command, option", [("generate", "--num-images"), ("export", "--out"), ("push", "--repo-id")]
)
def test_subcommand_help(capsys, command, option):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert option in capsys.readouterr().out


def test_console_script_is_installed():
    scripts = {entry.name: entry.value for entry in entry_points(group="console_scripts")}
    if "smart-hf" not in scripts:
        pytest.skip("smart_hf is installed without its console scripts (reinstall with pip install -e .)")
    assert scripts["smart-hf"] == "smart_hf.cli:main"


def test_new_subcommands_plug_into_the_registry(monkeypatch, capsys):
    ran = []
    command = cli.Command("hello", "Say hello.", lambda parser: parser.add_argument("--name"), ran.append)
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, command])
    assert cli.main(["hello", "--name", "x"]) == 0
    assert ran[0].name == "x"


def test_export_reads_the_training_output(exported, capsys):
    metadata = json.loads((exported / "smart_hf.json").read_text())
    assert metadata["score_model"] == "google/ddpm-cifar10-32"
    assert metadata["dataset"] == "cifar10"
    assert metadata["metrics"] == {"fid": 31.5, "train_seconds": 12.0}
    assert metadata["training"] == {"score_model": "google/ddpm-cifar10-32", "seed": 1}
    hub.validate_export(exported)


def test_export_refuses_a_non_empty_folder(training_output, exported, capsys):
    assert cli.main(["export", str(training_output), "--out", str(exported)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_generate_grid_and_individual_images(exported, tmp_path, capsys):
    grid_path, individual = tmp_path / "grid.png", tmp_path / "images"
    argv = ["generate", str(exported), "--num-images", "5", "--seed", "3", "--out", str(grid_path)]
    assert cli.main([*argv, "--save-individual", str(individual), "--device", "cpu"]) == 0
    assert sorted(path.name for path in individual.iterdir()) == [f"{i:05d}.png" for i in range(5)]
    with Image.open(grid_path) as grid:
        assert grid.size == (3 * 66 + 2, 2 * 66 + 2)  # 3 columns × 2 rows of 8×8 images enlarged ×8
        first = np.asarray(grid)
    assert cli.main([*argv, "--out", str(tmp_path / "again.png")]) == 0
    with Image.open(tmp_path / "again.png") as again:
        np.testing.assert_array_equal(np.asarray(again), first)
    assert "Wrote a grid of 5 images" in capsys.readouterr().out


def test_generate_class_label_and_batches(exported, tmp_path):
    argv = ["generate", str(exported), "--num-images", "3", "--class-label", "2", "--batch-size", "2"]
    assert cli.main([*argv, "--out", str(tmp_path / "grid.png"), "--columns", "3"]) == 0
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3 * 66 + 2, 66 + 2)


def test_generate_from_a_generator_folder(training_output, tmp_path):
    assert (
        cli.main(["generate", str(training_output), "--num-images", "2", "--out", str(tmp_path / "g.png")])
        == 0
    )
    assert (tmp_path / "g.png").is_file()


def test_generate_errors(exported, tmp_path, capsys):
    unconditional = tmp_path / "unconditional"
    DCGANGenerator(**TINY).save_pretrained(unconditional)
    out = str(tmp_path / "g.png")
    assert cli.main(["generate", str(unconditional), "--class-label", "1", "--out", out]) == 1
    assert "unconditional" in capsys.readouterr().err
    assert cli.main(["generate", str(exported), "--class-label", "7", "--out", out]) == 1
    assert "[0, 2]" in capsys.readouterr().err
    assert cli.main(["generate", str(tmp_path / "missing" / "model"), "--out", out]) == 1
    assert "neither a folder nor a Hub id" in capsys.readouterr().err


def test_push(exported, monkeypatch, capsys):
    """What exactly is uploaded, and every refusal: tests/smart_hf/test_push.py."""
    hub_calls = FakeHub(monkeypatch)
    assert cli.main(["push", str(exported), "--repo-id", "user/gan", "--private"]) == 0
    assert hub_calls.created == [
        ("user/gan", {"private": True, "token": None, "exist_ok": True, "repo_type": "model"})
    ]
    assert hub_calls.uploaded == json.loads((exported / "smart_hf.json").read_text())["files"]
    assert "https://huggingface.co/user/gan/commit/abc123" in capsys.readouterr().out


def test_push_refuses_a_non_export(training_output, capsys):
    assert cli.main(["push", str(training_output), "--repo-id", "user/gan"]) == 1
    assert "not a smart_hf export" in capsys.readouterr().err


SCORE_MODEL = str(Path(smart_hf.__file__).parent / "assets" / "score_models" / "digits-unet")


@pytest.mark.parametrize("sampler", cli.SAMPLERS)
def test_generate_with_a_sampler(sampler, tmp_path, capsys):
    """Every multi-step sampler draws images from a score model; a seed fixes them."""
    grids = []
    for name in ("a", "b"):
        argv = ["generate", SCORE_MODEL, "--sampler", sampler, "--num-inference-steps", "3", "--seed", "1"]
        argv += ["--num-images", "3", "--out", str(tmp_path / f"{name}.png")]
        assert cli.main([*argv, "--save-individual", str(tmp_path / name)]) == 0
        grids.append(np.asarray(Image.open(tmp_path / f"{name}.png")))
    assert "3 images" in capsys.readouterr().out
    assert np.array_equal(grids[0], grids[1])
    assert [Image.open(tmp_path / "a" / f"{i:05d}.png").size for i in range(3)] == [(8, 8)] * 3


def test_generate_sampler_errors(exported, tmp_path, capsys):
    out = str(tmp_path / "g.png")
    assert cli.main(["generate", SCORE_MODEL, "--out", out]) == 1
    assert "no one-step generator" in capsys.readouterr().err
    assert cli.main(["generate", str(exported), "--sampler", "cas", "--out", out]) == 1
    assert "DDPMPipeline" in capsys.readouterr().err
    assert cli.main(["generate", SCORE_MODEL, "--sampler", "ddim", "--eds", "--out", out]) == 1
    assert "cas and als" in capsys.readouterr().err
    assert cli.main(["generate", SCORE_MODEL, "--eds", "--out", out]) == 1
    assert "only with --sampler" in capsys.readouterr().err
    assert cli.main(["generate", SCORE_MODEL, "--sampler", "cas", "--class-label", "1", "--out", out]) == 1
    assert "one-step" in capsys.readouterr().err


def test_generate_refine_steps(tmp_path, capsys):
    """--refine-steps runs the discriminator-guided refinement of an export that has a discriminator, and
    says what is missing otherwise."""
    torch.manual_seed(0)
    gan = DCGANGenerator(out_channels=1, **TINY)
    discriminator = DCGANDiscriminator(in_channels=1, resolution=8, base_channels=4, max_channel_multiplier=2)
    with_d = hub.export_pipeline(gan, tmp_path / "with_d", discriminator_model=discriminator)
    without_d = hub.export_pipeline(gan, tmp_path / "without_d")
    grids = {}
    for name, folder, steps in (("plain", with_d, "0"), ("refined", with_d, "3")):
        out = tmp_path / f"{name}.png"
        argv = ["generate", str(folder), "--num-images", "4", "--refine-steps", steps, "--out", str(out)]
        assert cli.main([*argv, "--refine-step-size", "5"]) == 0
        grids[name] = np.asarray(Image.open(out)).astype(int)
    assert np.abs(grids["plain"] - grids["refined"]).max() > 0
    assert (
        cli.main(["generate", str(without_d), "--refine-steps", "2", "--out", str(tmp_path / "x.png")]) == 1
    )
    assert "discriminator" in capsys.readouterr().err
    assert cli.main(["generate", SCORE_MODEL, "--sampler", "ddim", "--refine-steps", "2"]) == 1
    assert "--refine-steps" in capsys.readouterr().err
