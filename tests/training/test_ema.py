"""EMA of the GAN loop: saved into generator_ema/, restored on resume, used for the exported generator."""

import json

import pytest
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from smart_hf.models.toy_mlp import ToyDiscriminator, ToyGenerator
from smart_hf.training import build
from smart_hf.training.batch_norm import recalibrate_batch_norm
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import (
    TrainingProgress,
    averaged_generator,
    checkpoint_state,
    register_model_hooks,
    restore_progress,
    train_gan,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "--max_train_steps 4 --train_batch_size 16 --hidden_dim 8 --num_layers 1 --num_eval_samples 50".split()


def config(tmp_path, *flags):
    return parse_gan_args([*TINY, "--output_dir", str(tmp_path), *flags])


def tensors(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_equal_tensors(actual, expected):
    assert len(actual) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(actual, expected, strict=True))


def moved_ema(generator, steps=3):
    """An EMA (decay 0.5) that lags the generator: its weights and the live ones differ."""
    ema = EMAModel(generator.parameters(), decay=0.5)
    for _ in range(steps):
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(torch.randn_like(p))
        ema.step(generator.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(ema.shadow_params, generator.parameters(), strict=True))
    return ema


def prepared_models(accelerator):
    generator = ToyGenerator(latent_dim=2, hidden_dim=8, num_layers=1, batch_norm=True)
    discriminator = ToyDiscriminator(hidden_dim=8, num_layers=1)
    return accelerator.prepare(generator, discriminator)


def test_checkpoints_save_live_and_ema_weights_as_folders_and_load_both_back(tmp_path):
    accelerator = Accelerator(cpu=True)
    generator, discriminator = prepared_models(accelerator)
    ema = moved_ema(generator)
    run_config = config(tmp_path, "--use_ema")
    register_model_hooks(accelerator, ema, run_config)
    saved = {
        "G": tensors(generator),
        "D": tensors(discriminator),
        "ema": [p.clone() for p in ema.shadow_params],
    }
    accelerator.save_state(str(tmp_path / "checkpoint"))

    folder = tmp_path / "checkpoint"
    assert_equal_tensors(tensors(ToyGenerator.from_pretrained(folder / "generator")), saved["G"])
    assert_equal_tensors(tensors(ToyDiscriminator.from_pretrained(folder / "discriminator")), saved["D"])
    averaged = ToyGenerator.from_pretrained(folder / "generator_ema")
    assert_equal_tensors(tensors(averaged), saved["ema"])
    # Its BatchNorm statistics are recomputed for the averaged weights, as averaged_generator does.
    expected = averaged_generator(generator, ema, run_config)
    assert_equal_tensors(list(averaged.buffers()), list(expected.buffers()))
    assert not (folder / "model.safetensors").exists() and not (folder / "pytorch_model.bin").exists()

    with torch.no_grad():
        for model in (generator, discriminator):
            for p in model.parameters():
                p.zero_()
    ema.shadow_params = [torch.zeros_like(p) for p in ema.shadow_params]
    accelerator.load_state(str(folder))
    assert_equal_tensors(tensors(generator), saved["G"])
    assert_equal_tensors(tensors(discriminator), saved["D"])
    assert_equal_tensors(ema.shadow_params, saved["ema"])


def test_checkpoints_hold_the_fake_score_model_when_the_run_trains_one(tmp_path):
    accelerator = Accelerator(cpu=True)
    generator, discriminator = prepared_models(accelerator)
    run_config = config(tmp_path, "--fake_score")
    fake_score = accelerator.prepare(build.build_fake_score(run_config, (2,), None)[0])
    register_model_hooks(accelerator, None, run_config)
    saved = tensors(fake_score)
    accelerator.save_state(str(tmp_path / "checkpoint"))
    with torch.no_grad():
        for p in fake_score.parameters():
            p.zero_()
    accelerator.load_state(str(tmp_path / "checkpoint"))
    assert_equal_tensors(tensors(fake_score), saved)
    assert (tmp_path / "checkpoint" / "fake_score" / "config.json").is_file()


def test_checkpoints_without_ema_have_no_generator_ema_and_an_ema_run_refuses_them(tmp_path):
    accelerator = Accelerator(cpu=True)
    generator, discriminator = prepared_models(accelerator)
    register_model_hooks(accelerator, None, config(tmp_path))
    accelerator.save_state(str(tmp_path / "checkpoint"))
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir() if p.is_dir()) == [
        "discriminator",
        "generator",
    ]

    other = Accelerator(cpu=True)
    generator, discriminator = prepared_models(other)
    register_model_hooks(other, moved_ema(generator), config(tmp_path, "--use_ema"))
    with pytest.raises(ValueError, match="saved without --use_ema; resume without it"):
        other.load_state(str(tmp_path / "checkpoint"))


def test_averaged_generator_is_an_eval_copy_with_the_ema_weights_and_their_own_batch_norm_statistics(
    tmp_path,
):
    generator = ToyGenerator(latent_dim=2, hidden_dim=8, num_layers=1, batch_norm=True).train()
    ema = moved_ema(generator)
    live = tensors(generator)
    run_config = config(tmp_path, "--use_ema", "--train_batch_size", "8", "--seed", "3")
    averaged = averaged_generator(generator, ema, run_config)

    assert_equal_tensors(tensors(averaged), ema.shadow_params)
    assert_equal_tensors(tensors(generator), live)  # the live generator is left alone
    assert not averaged.training and generator.training
    assert not any(p.requires_grad for p in averaged.parameters())
    expected = ToyGenerator.from_config(generator.config)
    expected.load_state_dict(averaged.state_dict())
    recalibrate_batch_norm(expected, 8, 3)
    assert_equal_tensors(list(averaged.buffers()), list(expected.buffers()))
    assert not torch.equal(averaged.net[1].running_mean, generator.net[1].running_mean)


def test_averaged_generator_without_ema_is_an_eval_copy_of_the_live_generator(tmp_path):
    generator = ToyGenerator(latent_dim=2, hidden_dim=8, num_layers=1, batch_norm=True).train()
    copy = averaged_generator(generator, None, config(tmp_path))
    assert copy is not generator and not copy.training and generator.training
    assert_equal_tensors(tensors(copy), tensors(generator))
    assert_equal_tensors(list(copy.buffers()), list(generator.buffers()))


def test_checkpoint_state_and_restore_progress_round_trip_the_counters_and_the_ema_state():
    generator = ToyGenerator(latent_dim=2, hidden_dim=8, num_layers=1)
    ema = moved_ema(generator, steps=5)
    progress = TrainingProgress(global_step=7, discriminator_step=14, nonfinite_steps=1, train_seconds=2.5)
    state = json.loads(json.dumps(checkpoint_state(progress, ema)))
    assert state["global_step"] == 7 and state["discriminator_step"] == 14 and state["train_seconds"] == 2.5
    assert state["ema"]["optimization_step"] == 5 and state["ema"]["decay"] == 0.5
    assert "shadow_params" not in state["ema"]
    assert "ema" not in checkpoint_state(progress, None)
    without_ema = TrainingProgress()
    restore_progress(checkpoint_state(progress, None), without_ema, None)
    assert without_ema == progress

    fresh_ema = EMAModel(generator.parameters(), decay=0.5)
    shadow = [p.clone() for p in fresh_ema.shadow_params]
    fresh = TrainingProgress()
    restore_progress(state, fresh, fresh_ema)
    assert fresh == progress and not hasattr(fresh, "ema")
    assert fresh_ema.optimization_step == 5 and fresh_ema.decay == 0.5
    assert_equal_tensors(fresh_ema.shadow_params, shadow)  # the weights come from generator_ema/ instead


def test_a_run_steps_its_ema_with_the_configured_decay_and_saves_it_in_generator_ema(tmp_path):
    """ema_4 = d·ema_3 + (1 − d)·live_4 with diffusers' warm-up decay d = min(max_decay, 1 − (1 + s)^−power),
    s = optimization step − 1, read from the checkpoints of steps 3 and 4."""
    flags = ("--use_ema", "--ema_max_decay", "0.6", "--ema_power", "0.5", "--checkpointing_steps", "1")
    train_gan(config(tmp_path, *flags, "--checkpoints_total_limit", "2"))
    before, after = tmp_path / "checkpoint-3", tmp_path / "checkpoint-4"
    step = json.loads((after / "training_state.json").read_text())["ema"]["optimization_step"]
    decay = min(0.6, 1 - (1 + (step - 1)) ** -0.5)
    assert 0 < decay < 0.6  # the warm-up is still on: the check sees both terms
    live = tensors(ToyGenerator.from_pretrained(after / "generator"))
    ema = tensors(ToyGenerator.from_pretrained(after / "generator_ema"))
    previous = tensors(ToyGenerator.from_pretrained(before / "generator_ema"))
    for e, p, g in zip(ema, previous, live, strict=True):
        torch.testing.assert_close(e, decay * p + (1 - decay) * g)
    assert not all(torch.equal(e, g) for e, g in zip(ema, live, strict=True))
    final = tensors(ToyGenerator.from_pretrained(tmp_path / "generator_ema"))
    assert_equal_tensors(final, ema)
    assert_equal_tensors(tensors(ToyGenerator.from_pretrained(tmp_path / "generator")), live)
