"""train_score_model.py --adversarial: the hybrid DSM + LSGAN objective on denoised samples."""

import json

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from safetensors.torch import load_file

from smart_hf.models import DCGANDiscriminator, ToyDiscriminator
from smart_hf.scores import load_score_model
from smart_hf.training.config import parse_score_model_args
from smart_hf.training.score_model import denoised_sample, train_score_model, training_target

TINY_UNET = "--block_out_channels 8 16 --train_batch_size 8 --num_inference_steps 2 --d_base_channels 4"
TINY_MLP = "--dataset_name grid25 --hidden_dim 8 --num_layers 1 --train_batch_size 16 --d_hidden_dim 8"


def run(output_dir, *flags):
    """Train with --adversarial and `flags`, each a string of space-separated options."""
    args = parse_score_model_args(
        ["--output_dir", str(output_dir), "--logging_steps", "1", "--adversarial", *" ".join(flags).split()]
    )
    return train_score_model(args)


def weights(folder):
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def changed(before, after):
    return any(not torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_denoised_sample_of_the_true_target_is_the_clean_sample(prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    clean, noise = torch.randn(4, 3), torch.randn(4, 3)
    timesteps = torch.tensor([0, 10, 500, 999])
    noisy = scheduler.add_noise(clean, noise, timesteps)
    target = training_target(scheduler, clean, noise, timesteps)
    x_hat = denoised_sample(scheduler, noisy, target, timesteps)
    torch.testing.assert_close(x_hat, clean, rtol=1e-4, atol=2e-3)  # a_999 = 0.006 amplifies float error


def test_image_run_updates_the_score_network_and_the_discriminator(tmp_path):
    flags = "--max_train_steps 2 --checkpointing_steps 1 --num_sample_images 2"
    results = run(tmp_path, TINY_UNET, flags)
    assert results["global_step"] == 2
    first, second = tmp_path / "checkpoint-1", tmp_path / "checkpoint-2"
    assert changed(weights(first / "unet"), weights(second / "unet"))
    assert changed(weights(first / "discriminator"), weights(second / "discriminator"))
    discriminator = DCGANDiscriminator.from_pretrained(second, subfolder="discriminator")
    assert discriminator.config.base_channels == 4
    assert (second / "optimizer_1.bin").exists()  # the discriminator's Adam state

    history = json.loads((tmp_path / "training_history.json").read_text())["history"]
    assert {"loss", "d_loss", "d_real", "d_fake", "adversarial_loss"} <= set(history[-1])
    images = DDPMPipeline.from_pretrained(tmp_path)(batch_size=1, num_inference_steps=2, output_type="np")
    assert images.images.shape == (1, 8, 8, 1)
    assert load_score_model(str(tmp_path)).sample_shape == (1, 8, 8)


def test_adversarial_term_alone_trains_the_score_network(tmp_path):
    """With dsm_weight 0 the score network still moves: the gradient flows through x_hat."""
    run(tmp_path, TINY_MLP, "--dsm_weight 0 --max_train_steps 2 --checkpointing_steps 1")
    before, after = (weights(tmp_path / f"checkpoint-{step}" / "score_model") for step in (1, 2))
    assert changed(before, after)


def test_toy_run_with_two_discriminator_steps_resumes_exactly(tmp_path):
    flags = [TINY_MLP, "--d_steps_per_score_step 2 --checkpointing_steps 3 --max_train_steps 6"]
    run(tmp_path / "straight", *flags)
    checkpoint = tmp_path / "straight" / "checkpoint-3"
    discriminator = ToyDiscriminator.from_pretrained(checkpoint, subfolder="discriminator")
    assert discriminator.config.hidden_dim == 8
    run(tmp_path / "resumed", *flags, f"--resume_from_checkpoint {checkpoint}")
    for folder in ("score_model", "checkpoint-6/discriminator"):
        straight, resumed = weights(tmp_path / "straight" / folder), weights(tmp_path / "resumed" / folder)
        assert not changed(straight, resumed)
    assert load_score_model(str(tmp_path / "resumed")).sample_shape == (2,)


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--gradient_accumulation_steps 2", "--adversarial needs --gradient_accumulation_steps 1"),
        ("--d_steps_per_score_step 0", "--d_steps_per_score_step must be >= 1"),
        ("--adversarial_weight -1", "--adversarial_weight must be >= 0"),
    ],
)
def test_bad_adversarial_options_fail_before_training(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, TINY_MLP, "--max_train_steps 1", flags)
    assert not tmp_path.joinpath("score_model").exists()
