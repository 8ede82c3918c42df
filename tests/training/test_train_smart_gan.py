import json
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smart_hf.losses import GANLoss
from smart_hf.models.toy_mlp import MLPNoisePredictor, ToyDiscriminator, ToyGenerator
from smart_hf.training import build
from smart_hf.training.batch_norm import recalibrate_batch_norm
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan

TINY = (
    "--max_train_steps 20 --train_batch_size 32 --hidden_dim 16 --num_layers 1 --num_eval_samples 100 "
    "--logging_steps 5"
).split()


pytestmark = pytest.mark.usefixtures("one_thread")


def run(tmp_path, *flags):
    return train_gan(parse_gan_args([*TINY, "--output_dir", str(tmp_path), *flags]))


def test_toy_run_writes_generator_metrics_and_plot(tmp_path):
    results = run(tmp_path, "--smart_interval", "1", "--r1_gamma", "0.1", "--r1_interval", "2")
    assert (tmp_path / "generator" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "samples.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["modes_covered"] == results["modes_covered"] and saved["num_modes"] == 25


def test_batch_norm_generator_and_narrower_discriminator(tmp_path):
    run(
        tmp_path,
        "--generator_batch_norm",
        "--latent_dim",
        "2",
        "--d_hidden_dim",
        "8",
        "--checkpointing_steps",
        "20",
    )
    discriminator = ToyDiscriminator.from_pretrained(tmp_path / "checkpoint-20" / "discriminator")
    assert discriminator.net[0].out_features == 8
    generator = ToyGenerator.from_pretrained(tmp_path / "generator")
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert generator.config.batch_norm and len(norms) == 1  # one hidden layer in TINY
    assert norms[0].num_batches_tracked == 40  # 20 steps, each with a D and a G batch
    assert not torch.allclose(norms[0].running_var, torch.ones(16))


def test_fourier_features_are_fixed_and_travel_with_the_weights(tmp_path):
    run(
        tmp_path,
        "--g_fourier_scale",
        "3",
        "--d_fourier_scale",
        "0.5",
        "--fourier_features",
        "4",
        "--checkpointing_steps",
        "10",
    )
    generator = ToyGenerator.from_pretrained(tmp_path / "generator").eval()
    early = ToyGenerator.from_pretrained(tmp_path / "checkpoint-10" / "generator")
    projection = generator.input_features.projection
    assert projection.shape == (8, 4) and torch.equal(projection, early.input_features.projection)
    assert 1.5 < projection.std() < 6  # drawn with std 3
    latents = torch.randn(5, 8)
    angles = latents @ projection
    first_layer = generator.net[0](torch.cat([latents, angles.sin(), angles.cos()], dim=-1))
    assert torch.allclose(generator.net[1:](first_layer), generator(latents), atol=1e-6)
    discriminator = ToyDiscriminator.from_pretrained(tmp_path / "checkpoint-10" / "discriminator")
    assert discriminator.net[0].in_features == 2 + 2 * 4
    assert discriminator.input_features.projection.abs().max() < 5  # std 0.5


def test_learned_score_folder_is_accepted(tmp_path):
    MLPNoisePredictor(hidden_dim=16, num_layers=1).save_pretrained(tmp_path / "score" / "score_model")
    results = run(
        tmp_path / "run",
        "--score",
        str(tmp_path / "score"),
        "--smart_gradient",
        "sds",
        "--dataset_name",
        "ring8",
    )
    assert results["num_modes"] == 8


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset_name", "moons"], "Unknown toy data set 'moons'"),
        (["--score", "missing/score/folder"], "no such folder"),
        (["--smart_t_min", "10", "--smart_t_max", "1000"], "outside the score model's schedule"),
        (["--smart_weight", "-0.1"], "must be >= 0"),
        (["--smart_interval", "0"], "interval must be >= 1"),
        (["--lr_warmup_steps", "-1"], "--lr_warmup_steps must be >= 0"),
        (["--lr_decay_steps", "5"], "sets the decay of --lr_scheduler warmup_stable_decay"),
        (["--lr_scheduler", "warmup_stable_decay", "--lr_decay_steps", "0"], "--lr_decay_steps must be >= 1"),
        (["--lr_scheduler", "warmup_stable_decay", "--lr_decay_steps", "50"], r"must be in \[1, .* = 20\]"),
        (["--masked_gan", "spatial"], "grid25 is a toy 2-D set. Use --masked_gan none"),
        (["--diffusion_gan", "--diffusion_gan_t_min", "0"], "Diffusion-GAN needs 1 <= t_min <= t_max"),
        (["--d_fourier_scale", "-1"], "--d_fourier_scale must be >= 0"),
        (["--dataset_name", "digits", "--g_fourier_scale", "3"], "digits is an image data set: drop them"),
        (["--fourier_features", "8"], "--fourier_features only acts with --g_fourier_scale"),
        (["--freeze_batch_norm_step", "-1"], "--freeze_batch_norm_step must be >= 0, got -1"),
        (["--freeze_batch_norm_step", "5"], "the toy generator has none: add --generator_batch_norm"),
        (["--smart_noise_draws", "0"], "at least one noise draw per sample, got 0"),
    ],
)
def test_bad_inputs_fail_before_training(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, *flags)
    assert not (tmp_path / "generator").exists()


def test_score_of_another_dimension_is_refused(tmp_path):
    MLPNoisePredictor(data_dim=3, hidden_dim=16, num_layers=1).save_pretrained(
        tmp_path / "score" / "score_model"
    )
    with pytest.raises(ValueError, match=r"shape \(2,\) but the score model expects \(3,\)"):
        run(tmp_path / "run", "--score", str(tmp_path / "score"))


class FlakyGANLoss(GANLoss):
    """Makes the generator loss NaN at the given generator steps (all steps when `nan_steps` is None)."""

    nan_steps: set[int] | None = set()

    def generator_phase(self, latents, step, class_labels=None):
        terms = super().generator_phase(latents, step, class_labels)
        if self.nan_steps is None or step in self.nan_steps:
            terms.total = terms.total * float("nan")
        return terms


def test_nonfinite_steps_are_skipped_and_logged(tmp_path, monkeypatch):
    monkeypatch.setattr(FlakyGANLoss, "nan_steps", {3, 4, 10})
    monkeypatch.setattr(build, "GANLoss", FlakyGANLoss)
    results = run(tmp_path, "--max_nonfinite_steps", "3")
    assert results["nonfinite_steps"] == 3
    generator = ToyGenerator.from_pretrained(tmp_path / "generator")
    assert all(torch.isfinite(p).all() for p in generator.parameters())  # the NaN steps were not applied


def test_too_many_nonfinite_steps_in_a_row_stop_at_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(FlakyGANLoss, "nan_steps", set(range(6, 20)))
    monkeypatch.setattr(build, "GANLoss", FlakyGANLoss)
    with pytest.raises(RuntimeError, match=r"6 steps in a row .* last good checkpoint is .*checkpoint-5"):
        run(tmp_path, "--checkpointing_steps", "5", "--max_nonfinite_steps", "6")
    assert not (tmp_path / "checkpoint-10").exists()  # not written during a run of non-finite steps
    monkeypatch.setattr(FlakyGANLoss, "nan_steps", None)
    with pytest.raises(RuntimeError, match="No checkpoint was saved"):
        run(tmp_path / "again", "--max_nonfinite_steps", "2")


def test_toy_run_resumes_with_ema(tmp_path):
    run(tmp_path, "--checkpointing_steps", "10", "--use_ema", "--max_train_steps", "10")
    results = run(tmp_path, "--checkpointing_steps", "10", "--use_ema", "--resume_from_checkpoint", "latest")
    state = json.loads((tmp_path / "checkpoint-20" / "training_state.json").read_text())
    assert results["global_step"] == state["global_step"] == 20 and state["ema"]["optimization_step"] == 20
    assert (tmp_path / "generator_ema" / "config.json").exists()


def test_ema_generator_gets_batch_norm_statistics_of_its_own_weights(tmp_path):
    run(tmp_path, "--use_ema", "--generator_batch_norm", "--latent_dim", "2")
    live = ToyGenerator.from_pretrained(tmp_path / "generator")
    averaged = ToyGenerator.from_pretrained(tmp_path / "generator_ema")
    latents = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = averaged.net[0](latents)  # what the first BatchNorm sees with the averaged weights
    norm, live_norm = averaged.net[1], live.net[1]
    assert torch.allclose(norm.running_mean, features.mean(0), atol=0.05 * features.std().item())
    assert torch.allclose(norm.running_var, features.var(0), rtol=0.1)
    assert not torch.allclose(live_norm.running_var, features.var(0), rtol=0.1)  # the live ones do not fit


def test_frozen_batch_norm_keeps_the_statistics_of_the_freeze_step_and_resumes_exactly(tmp_path):
    flags = ["--generator_batch_norm", "--latent_dim", "2", "--freeze_batch_norm_step", "5"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole, *flags, "--checkpointing_steps", "5")
    at_freeze, after, final = (
        ToyGenerator.from_pretrained(whole / folder / "generator")
        for folder in ("checkpoint-5", "checkpoint-10", ".")
    )
    recalibrate_batch_norm(at_freeze, batch_size=32, seed=0)  # TINY's batch, the default seed
    for model in (after, final):
        assert torch.equal(model.net[1].running_mean, at_freeze.net[1].running_mean)
        assert torch.equal(model.net[1].running_var, at_freeze.net[1].running_var)
    assert not torch.equal(after.net[0].weight, final.net[0].weight)  # the weights still train

    run(resumed, *flags, "--checkpointing_steps", "10", "--max_train_steps", "10")
    run(resumed, *flags, "--checkpointing_steps", "10", "--resume_from_checkpoint", "latest")
    weights = [ToyGenerator.from_pretrained(path / "generator").state_dict() for path in (whole, resumed)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_a_flag_switches_off_the_freeze_a_config_sets(tmp_path):
    config = tmp_path / "preset.yaml"
    config.write_text("generator_batch_norm: true\nfreeze_batch_norm_step: 2000\n")
    assert parse_gan_args(["--config", str(config)]).freeze_batch_norm_step == 2000
    args = parse_gan_args(["--config", str(config), "--freeze_batch_norm_step", "none"])
    assert args.freeze_batch_norm_step is None
    with pytest.raises(SystemExit):
        parse_gan_args(["--freeze_batch_norm_step", "never"])


def test_linear_lr_schedule_decays_both_learning_rates_to_zero_across_a_resume(tmp_path):
    flags = ("--checkpointing_steps", "10", "--lr_scheduler", "linear", "--g_learning_rate", "1e-3")
    run(tmp_path, *flags, "--max_train_steps", "20", "--d_learning_rate", "2e-3")
    halfway = tmp_path / "checkpoint-10"
    (tmp_path / "checkpoint-20").rename(tmp_path / "first-run-end")
    run(tmp_path, *flags, "--d_learning_rate", "2e-3", "--resume_from_checkpoint", "latest")

    def learning_rates(checkpoint):
        return [
            torch.load(checkpoint / name, weights_only=True)["param_groups"][0]["lr"]
            for name in ("optimizer.bin", "optimizer_1.bin")
        ]

    assert learning_rates(halfway) == pytest.approx([5e-4, 1e-3])
    assert learning_rates(tmp_path / "checkpoint-20") == pytest.approx([0.0, 0.0])
    assert learning_rates(tmp_path / "first-run-end") == pytest.approx([0.0, 0.0])


def test_warmup_stable_decay_holds_then_decays_linearly_to_zero_across_a_resume(tmp_path):
    flags = ("--checkpointing_steps", "5", "--lr_scheduler", "warmup_stable_decay", "--lr_decay_steps", "8")
    run(tmp_path, *flags, "--g_learning_rate", "1e-3")
    (tmp_path / "checkpoint-20").rename(tmp_path / "first-run-end")
    shutil.rmtree(tmp_path / "checkpoint-15")
    run(tmp_path, *flags, "--g_learning_rate", "1e-3", "--resume_from_checkpoint", "latest")  # from 10

    def generator_learning_rate(checkpoint):
        optimizer = torch.load(tmp_path / checkpoint / "optimizer.bin", weights_only=True)
        return optimizer["param_groups"][0]["lr"]

    # Stable for 20 - 8 = 12 steps, then 1e-3 · (20 - step) / 8.
    checkpoints = ("checkpoint-5", "checkpoint-10", "checkpoint-15", "checkpoint-20", "first-run-end")
    assert [generator_learning_rate(checkpoint) for checkpoint in checkpoints] == pytest.approx(
        [1e-3, 1e-3, 1e-3 * 5 / 8, 0.0, 0.0]
    )


DIFFUSION_GAN = (
    "--diffusion_gan --diffusion_gan_t_max 50 --diffusion_gan_d_target -0.5 --diffusion_gan_ada_kimg 1"
).split()  # T moves 0.128·(50 − 5) steps per 4 minibatches of 32


def test_diffusion_gan_toy_run_conditions_d_on_t_and_logs_t_and_r_d(tmp_path):
    results = run(tmp_path, *DIFFUSION_GAN, "--checkpointing_steps", "20", "--logger", "tensorboard")
    assert results["global_step"] == 20 and results["nonfinite_steps"] == 0
    config = json.loads((tmp_path / "checkpoint-20" / "discriminator" / "config.json").read_text())
    assert config["num_timesteps"] == 51
    events = EventAccumulator(str(next((tmp_path / "logs").rglob("events.out.tfevents.*"))))
    events.Reload()
    assert {"diffusion_T", "diffusion_p", "diffusion_r_d"} <= set(events.Tags()["scalars"])


def test_diffusion_gan_state_resumes_exactly(tmp_path):
    """p, T, the t-list and a half-finished adaptation interval come back from the checkpoint: a run stopped
    at step 10 and resumed ends like an uninterrupted one."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    flags = [*DIFFUSION_GAN, "--checkpointing_steps", "10"]
    run(whole, *flags)
    run(resumed, *flags, "--max_train_steps", "10")
    run(resumed, *flags, "--resume_from_checkpoint", "latest")
    states = [
        torch.load(path / "checkpoint-20" / "custom_checkpoint_1.pkl", weights_only=True)
        for path in (whole, resumed)
    ]
    assert states[0]["p"] > 0 and states[0]["num_steps"] > 5  # T has moved
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]) if torch.is_tensor(value) else value == states[1][key]
    weights = [ToyGenerator.from_pretrained(path / "generator").state_dict() for path in (whole, resumed)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_resuming_with_another_diffusion_gan_setting_is_refused(tmp_path):
    run(tmp_path / "first", "--checkpointing_steps", "10", "--max_train_steps", "10")
    # In the run's own folder, the recorded options tell what differs.
    with pytest.raises(ValueError, match=r"trained with other options \(--diffusion_gan False → True"):
        run(tmp_path / "first", *DIFFUSION_GAN, "--resume_from_checkpoint", "latest")
    # A checkpoint taken elsewhere: its discriminator tells.
    with pytest.raises(
        ValueError,
        match=r"checkpoint-10 was built without Diffusion-GAN, but this run needs "
        r"one for Diffusion-GAN with t_max 50",
    ):
        run(
            tmp_path / "second",
            *DIFFUSION_GAN,
            "--resume_from_checkpoint",
            str(tmp_path / "first" / "checkpoint-10"),
        )


def test_learning_rates_and_throughput_are_logged_with_the_means(tmp_path):
    """--report_to is --logger's diffusers spelling. Every --logging_steps: each learning rate of the window's
    last step (linear schedule: lr · (20 − step) / 20 at 0-based step 4, 9, 14, 19) and the window's
    throughput, which adds up to the run's seconds per step."""
    flags = "--report_to tensorboard --lr_scheduler linear --g_learning_rate 1e-3 --d_learning_rate 2e-3"
    results = run(tmp_path, *flags.split())
    events = EventAccumulator(str(next((tmp_path / "logs").rglob("events.out.tfevents.*"))))
    events.Reload()

    def logged(key):
        return [(event.step, event.value) for event in events.Scalars(key)]

    steps = [5, 10, 15, 20]
    assert logged("lr_g") == [(step, pytest.approx(1e-3 * (21 - step) / 20, rel=1e-6)) for step in steps]
    assert logged("lr_d") == [(step, pytest.approx(2e-3 * (21 - step) / 20, rel=1e-6)) for step in steps]
    steps_per_second = [value for _, value in logged("steps_per_second")]
    assert [step for step, _ in logged("steps_per_second")] == steps and min(steps_per_second) > 0
    assert [value for _, value in logged("images_per_second")] == pytest.approx(
        [32 * value for value in steps_per_second], rel=1e-6
    )  # batch 32, one D step per G step, one process
    seconds = sum(5 / value for value in steps_per_second)
    assert seconds == pytest.approx(20 * results["seconds_per_step"], rel=0.1)
    assert {"loss_D", "loss_G", "nonfinite_steps"} <= set(events.Tags()["scalars"])
