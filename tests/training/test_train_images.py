"""training/train_smart_gan.py on images: outputs, export, push, logs, exact resume, presets, bad input."""

import json
import logging
from pathlib import Path

import datasets
import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smart_hf import hub
from smart_hf.data import ImageDataset
from smart_hf.pipelines import SmartOneStepPipeline
from smart_hf.training import build, report
from smart_hf.training.config import DIGITS_SCORE, parse_gan_args
from smart_hf.training.gan import train_gan
from tests.helpers import TINY_GAN, save_image_folder, save_tiny_score

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
STATE = "training_state.json"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def score(tmp_path_factory):
    return save_tiny_score(tmp_path_factory.mktemp("score"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_image_folder(tmp_path_factory.mktemp("data") / "images")


def run(output_dir, *flags):
    args = parse_gan_args([*TINY_GAN, "--output_dir", str(output_dir), *flags])
    return train_gan(args)


def weights(path):
    return load_file(Path(path) / "diffusion_pytorch_model.safetensors")


def assert_same_weights(first, second):
    first, second = weights(first), weights(second)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first), "weights differ"


def test_conditional_run_exports_logs_samples_and_pushes(tmp_path, folder, monkeypatch):
    conditional_score = save_tiny_score(tmp_path / "score", num_classes=2)
    pushed = []
    monkeypatch.setattr(
        hub, "create_hub_repo", lambda repo_id, private: pushed.append(("create", repo_id)) or repo_id
    )
    monkeypatch.setattr(hub, "push_to_hub", lambda *args, **kwargs: pushed.append((args, kwargs)) or "url")
    out = tmp_path / "run"
    results = run(
        out,
        *f"--train_data_dir {folder} --cache_dir {tmp_path / 'cache'} --class_conditional --score "
        f"{conditional_score} --max_train_steps 4 --use_ema --logger tensorboard --save_images_steps 2 "
        "--checkpointing_steps 2 --push_to_hub --hub_model_id me/tiny --hub_private_repo".split(),
    )

    assert results["global_step"] == 4 and results["nonfinite_steps"] == 0
    assert results["score_matching_error"] > 0 and results["score_matching_error_real"] > 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["global_step"] == 4 and saved["config"]["class_conditional"] is True
    for step in (2, 4):
        assert (out / "samples" / f"step-00000{step}.png").exists()
        checkpoint = out / f"checkpoint-{step}"
        assert {"generator", "discriminator", "generator_ema", "training_state.json"} <= {
            path.name for path in checkpoint.iterdir()
        }
    assert (out / "samples.png").exists()

    export = out / "pipeline"
    hub.validate_export(export)
    assert pushed == [("create", "me/tiny"), ((str(export), "me/tiny"), {"private": True})]
    pipeline = SmartOneStepPipeline.from_pretrained(export)
    assert pipeline.num_classes == 2
    images = pipeline(batch_size=2, class_labels=[0, 1], generator=torch.Generator().manual_seed(0)).images
    assert images[0].size == (8, 8)
    metadata = json.loads((export / "smart_hf.json").read_text())
    assert (metadata["score_model"], metadata["score_model_source"]) == ("score", "local")
    assert (metadata["dataset"], metadata["dataset_source"]) == ("images", "local")
    assert metadata["metrics"]["global_step"] == 4
    # No feature extractor for an image folder works offline: no FD, precision or recall, and a note why.
    assert not {"fd_digits", "precision", "recall"} & set(saved)
    assert saved["evaluation"] == metadata["evaluation"] == {"note": report.NO_FEATURES_NOTE}
    assert "me/tiny" in (export / "README.md").read_text()
    # The export holds the EMA weights, which `smart-hf export` also prefers in the output folder.
    assert_same_weights(export / "gan", out / "generator_ema")
    assert type(hub.load_generator(out)).__name__ == "DCGANGenerator"

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*"))))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss_D", "loss_G", "loss_smart", "smart_weight", "nonfinite_steps"} <= scalars
    assert events.Tags()["images"] == ["samples"]


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, folder, score):
    """A run stopped after checkpoint-4 and resumed to step 8 ends with the weights, EMA, optimizer states and
    counters of a run that was never stopped (3 batches per epoch: it resumes mid-epoch; the generator's
    BatchNorm freezes after the resume)."""
    flags = (
        f"--train_data_dir {folder} --cache_dir {tmp_path / 'cache'} --score {score} --train_batch_size 2 "
        "--use_ema --checkpointing_steps 4 --r1_gamma 0.1 --r1_interval 3 --freeze_batch_norm_step 6"
    ).split()
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole, *flags, "--max_train_steps", "8", "--checkpoints_total_limit", "1")
    run(resumed, *flags, "--max_train_steps", "4")
    run(resumed, *flags, "--max_train_steps", "8", "--resume_from_checkpoint", "latest")

    assert sorted(path.name for path in whole.glob("checkpoint-*")) == ["checkpoint-8"]
    for name in ("generator", "generator_ema", "checkpoint-8/discriminator", "checkpoint-8/generator_ema"):
        assert_same_weights(whole / name, resumed / name)
    for name in ("optimizer.bin", "optimizer_1.bin"):
        saved = [torch.load(path / "checkpoint-8" / name, weights_only=True) for path in (whole, resumed)]
        assert saved[0]["state"].keys() == saved[1]["state"].keys()
        for key, state in saved[0]["state"].items():
            assert all(torch.equal(value, saved[1]["state"][key][name]) for name, value in state.items())
    states = [json.loads((run_dir / "checkpoint-8" / STATE).read_text()) for run_dir in (whole, resumed)]
    for state in states:
        state.pop("train_seconds")
    assert states[0] == states[1]
    assert states[0]["discriminator_step"] == 8 and states[0]["ema"]["optimization_step"] == 8


def test_bf16_mixed_precision(tmp_path, score):
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        flags = f"--dataset_name digits --score {score} --max_train_steps 2 --mixed_precision bf16"
        results = run(tmp_path, *flags.split())
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert results["global_step"] == 2 and results["nonfinite_steps"] == 0


def test_masked_and_diffusion_gan_on_digits_log_and_resume(tmp_path, score):
    flags = (
        f"--dataset_name digits --score {score} --masked_gan both --mask_patch_size 2 --diffusion_gan "
        "--diffusion_gan_t_max 20 --checkpointing_steps 2 --logger tensorboard --r1_gamma 0.1 --r1_interval 1"
    ).split()
    run(tmp_path, *flags, "--max_train_steps", "2")
    results = run(tmp_path, *flags, "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert results["global_step"] == 4 and results["nonfinite_steps"] == 0
    checkpoint = tmp_path / "checkpoint-4"
    spectral, diffusion = (torch.load(checkpoint / f"custom_checkpoint_{i}.pkl") for i in range(2))
    assert spectral["margins"].shape == (4,) and diffusion["num_steps"] == 5
    assert json.loads((checkpoint / "discriminator" / "config.json").read_text())["num_timesteps"] == 21
    scalars = set()
    for path in (tmp_path / "logs").rglob("events.out.tfevents.*"):
        events = EventAccumulator(str(path))
        events.Reload()
        scalars |= set(events.Tags()["scalars"])
    assert {"mask_band_0_p", "mask_band_3_p", "diffusion_T", "diffusion_p"} <= scalars


def save_dataset_without_images(path):
    datasets.Dataset.from_dict({"label": [0, 1], "text": ["a", "b"]}).save_to_disk(path)
    return str(path)


BAD_INPUTS = {
    "no image column": (
        lambda tmp, score: (
            f"--dataset_name {save_dataset_without_images(tmp / 'x')} --resolution 8 --score {score}"
        ),
        r"has no image column; its columns are \['label', 'text'\]",
    ),
    "empty folder": (lambda tmp, score: f"--train_data_dir {tmp} --score {score}", "contains no image files"),
    "channels": (
        lambda tmp, score: f"--dataset_name digits --score {score} --channels 3",
        "expects 1×8×8: pass --channels 1",
    ),
    "resolution": (
        lambda tmp, score: f"--dataset_name digits --score {score} --resolution 16",
        "expects 1×8×8: pass --resolution 8",
    ),
    "conditional score": (
        lambda tmp, score: f"--dataset_name digits --score {save_tiny_score(tmp / 'c10', num_classes=10)}",
        r"score model is class-conditional .*\(--class_conditional\)",
    ),
    "classes": (
        lambda tmp, score: (
            f"--train_data_dir {save_image_folder(tmp / 'two')} --cache_dir {tmp / 'cache'} "
            f"--class_conditional --score {save_tiny_score(tmp / 'c10', num_classes=10)}"
        ),
        "generator has 2 classes but the score model has 10",
    ),
    "analytic score": (lambda tmp, score: "--dataset_name digits --score analytic", "exact score of a toy"),
    "no score": (lambda tmp, score: "--dataset_name someone/cats --resolution 8", "Pass --score"),
    "accumulation": (
        lambda tmp, score: "--dataset_name digits --gradient_accumulation_steps 2",
        "not supported",
    ),
    "push without id": (lambda tmp, score: "--dataset_name digits --push_to_hub", "needs --hub_model_id"),
    "empty frequency bands": (
        lambda tmp, score: f"--dataset_name digits --score {score} --masked_gan spectral --mask_num_bands 40",
        "8×8 images leave some of 40 frequency bands empty",
    ),
    "mask ratio": (
        lambda tmp, score: f"--dataset_name digits --score {score} --masked_gan spatial --mask_ratio 0",
        "mask ratio must lie in",
    ),
    "no training samples": (
        lambda tmp, score: f"--dataset_name digits --score {score} --max_train_samples 0",
        "--max_train_samples must be >= 1, got 0",
    ),
    "subset of toy data": (
        lambda tmp, score: "--dataset_name grid25 --max_train_samples 10",
        "grid25 is a toy 2-D set whose batches are drawn afresh every step: drop --max_train_samples",
    ),
}


@pytest.mark.parametrize("make_flags, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_fail_before_training(tmp_path, score, make_flags, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        run(out, "--max_train_steps", "1", *make_flags(tmp_path, score).split())
    assert not (out / "generator").exists()


def test_config_file_sets_defaults_that_flags_override(tmp_path):
    config = tmp_path / "preset.yaml"
    config.write_text("dataset_name: digits\nsmart_weight: 0.02\nuse_ema: true\nsmart_t_max: 60\n")
    args = parse_gan_args(["--config", str(config), "--smart_weight", "0.05"])
    assert (args.dataset_name, args.smart.weight, args.use_ema) == ("digits", 0.05, True)
    assert args.smart.t_max == 60
    assert args.score == DIGITS_SCORE

    config.write_text("smart_wieght: 0.02\n")
    with pytest.raises(ValueError, match="unknown option 'smart_wieght'"):
        parse_gan_args(["--config", str(config)])
    config.write_text("loss: wasserstein\n")
    with pytest.raises(SystemExit):  # values are checked like flags
        parse_gan_args(["--config", str(config)])


# What a preset leaves to the user: ImageNet-64 has no public teacher or data set in the right format.
PRESET_ARGUMENTS = {
    "imagenet64.yaml": "--train_data_dir path/to/imagenet64 --score path/to/unet",
    "ttur.yaml": "--dataset_name digits",  # an overlay of optimizer settings only
}


@pytest.mark.parametrize("preset", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_presets_are_valid(preset):
    extra = PRESET_ARGUMENTS.get(preset, "").split()
    args = parse_gan_args(["--config", str(CONFIGS / preset), *extra])
    args.check()
    toy = args.is_toy
    assert args.score == "analytic" if toy else args.score
    assert 0 <= args.smart.t_min <= args.smart.t_max < 1000 and args.smart.weight > 0


def test_cifar10_preset_follows_the_paper():
    args = parse_gan_args(["--config", str(CONFIGS / "cifar10_ddpm.yaml")])
    assert args.score == "google/ddpm-cifar10-32" and args.smart.weight == 0.01
    assert (args.smart.t_min, args.smart.t_max, args.smart.interval) == (40, 60, 8)
    assert args.d_learning_rate > args.g_learning_rate  # TTUR


def test_max_train_samples_trains_on_a_seeded_subset(tmp_path, score, monkeypatch, caplog):
    """--max_train_samples N: the first N rows shuffled by --seed (`ImageDataset.subset`, like diffusers'
    scripts); above the data set's size, all of it, with a warning."""
    drawn = []
    subset = ImageDataset.subset
    monkeypatch.setattr(
        ImageDataset,
        "subset",
        lambda self, n, seed: drawn.append((len(self), n, seed)) or subset(self, n, seed),
    )
    flags = ["--dataset_name", "digits", "--score", score, "--max_train_steps", "1"]
    results = run(tmp_path / "small", *flags, "--max_train_samples", "12", "--seed", "3")
    assert drawn == [(1797, 12, 3)] and results["num_train_images"] == 12
    assert json.loads((tmp_path / "small" / "metrics.json").read_text())["config"]["max_train_samples"] == 12

    with caplog.at_level(logging.WARNING):
        results = run(tmp_path / "all", *flags, "--max_train_samples", "5000")
    assert results["num_train_images"] == 1797
    assert (
        "--max_train_samples 5000 exceeds the 1797 images of digits: training on all of them" in caplog.text
    )


@pytest.mark.parametrize("architecture", ["dcgan", "resnet"])
def test_gradient_checkpointing_trains_the_same_weights(tmp_path, folder, score, monkeypatch, architecture):
    flags = (
        f"--train_data_dir {folder} --score {score} --model_architecture {architecture} --max_train_steps 3"
    ).split()
    run(tmp_path / "plain", *flags)
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(
        torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k)
    )
    run(tmp_path / "checkpointed", *flags, "--gradient_checkpointing")
    assert calls  # G's and D's blocks and the UNet's were recomputed
    # The same images: compared as outputs, since Adam turns the float noise in the gradient of a bias that
    # BatchNorm cancels (ResNet's convolutions before a norm) into steps of the learning rate's size.
    latents = torch.randn(8, 8)
    plain, checkpointed = (
        hub.load_generator(tmp_path / run_dir).eval() for run_dir in ("plain", "checkpointed")
    )
    with torch.no_grad():
        torch.testing.assert_close(checkpointed(latents), plain(latents), rtol=0, atol=1e-4)


def test_random_flip_mirrors_about_half_the_images_reproducibly():
    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3).repeat(32, 1, 1, 1)
    flipped = build.RandomHorizontalFlip(seed=0)(images)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    assert ((flipped == images).flatten(1).all(1) | mirrored).all()  # each image kept or mirrored, whole
    assert 16 <= mirrored.sum() <= 48
    assert torch.equal(build.RandomHorizontalFlip(seed=0)(images), flipped)


def test_random_flip_resumes_exactly(tmp_path, folder, score):
    flags = f"--train_data_dir {folder} --score {score} --checkpointing_steps 3".split()
    run(tmp_path / "whole", *flags, "--random_flip", "--max_train_steps", "6")
    run(tmp_path / "resumed", *flags, "--random_flip", "--max_train_steps", "3")
    run(
        tmp_path / "resumed",
        *flags,
        "--random_flip",
        "--max_train_steps",
        "6",
        "--resume_from_checkpoint=latest",
    )
    assert_same_weights(tmp_path / "whole" / "generator", tmp_path / "resumed" / "generator")
    # The flips matter: without them the run ends elsewhere.
    run(tmp_path / "unflipped", *flags, "--max_train_steps", "6")
    whole, unflipped = (
        weights(tmp_path / "whole" / "generator"),
        weights(tmp_path / "unflipped" / "generator"),
    )
    assert any(not torch.equal(whole[key], unflipped[key]) for key in whole)


def test_random_flip_is_refused_for_toy_data():
    with pytest.raises(ValueError, match="toy 2-D set: it takes no image options"):
        parse_gan_args(["--dataset_name", "grid25", "--random_flip"]).check()
