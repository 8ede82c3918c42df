"""Faults a user meets: a run killed (SIGKILL) while it writes a checkpoint, then resumed with `latest`; an
output folder reused by another run."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from smart_hf.training import gan
from smart_hf.training.config import parse_gan_args
from smart_hf.training.gan import train_gan

FLAGS = (
    "--max_train_steps 20 --train_batch_size 32 --hidden_dim 16 --num_layers 1 --num_eval_samples 100 "
    "--logging_steps 5 --checkpointing_steps 5 --checkpoints_total_limit 1 --use_ema --ema_max_decay 0.9"
).split()
WEIGHTS = "diffusion_pytorch_model.safetensors"
GENERATOR = os.path.join("generator", WEIGHTS)

# Runs the training and kills its own process at one stage of writing checkpoint-10.
KILLER = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from diffusers.models.modeling_utils import ModelMixin
    from smart_hf.training import checkpoints
    from smart_hf.training.config import parse_gan_args
    from smart_hf.training.gan import train_gan

    stage = sys.argv[1]

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    save_pretrained, dump = ModelMixin.save_pretrained, checkpoints.json.dump
    replace, rmtree = os.replace, shutil.rmtree

    def saving_model(self, path, *args, **kwargs):
        if stage == "models" and "checkpoint-10.partial" in str(path) and "discriminator" in str(path):
            kill()  # the generator is written, the discriminator not
        return save_pretrained(self, path, *args, **kwargs)

    def dumping(obj, f, *args, **kwargs):
        if stage == "state" and "checkpoint-10.partial" in f.name:
            f.write('{"global_step": 1')  # half a file
            f.flush()
            kill()
        return dump(obj, f, *args, **kwargs)

    def renaming(source, target):
        if stage == "rename" and str(target).endswith("checkpoint-10"):
            kill()
        return replace(source, target)

    def removing(path, *args, **kwargs):
        if stage == "prune" and str(path).endswith("checkpoint-5"):
            kill()  # checkpoint-10 is in place, the old one not yet deleted
        return rmtree(path, *args, **kwargs)

    ModelMixin.save_pretrained = saving_model
    checkpoints.json.dump = dumping
    checkpoints.os.replace = renaming
    checkpoints.shutil.rmtree = removing
    train_gan(parse_gan_args(sys.argv[2:]))
    """
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    train_gan(parse_gan_args([*FLAGS, "--output_dir", str(output_dir)]))
    return load_file(output_dir / GENERATOR), load_file(
        output_dir / "generator_ema" / GENERATOR.split("/")[1]
    )


@pytest.mark.parametrize(
    "stage, resumed_from",
    [
        ("models", "checkpoint-5"),
        ("state", "checkpoint-5"),
        ("rename", "checkpoint-5"),
        ("prune", "checkpoint-10"),
    ],
)
def test_a_kill_while_writing_a_checkpoint_resumes_from_the_last_complete_one_exactly(
    tmp_path, uninterrupted, stage, resumed_from, caplog
):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-c", KILLER, stage, *FLAGS, "--output_dir", str(tmp_path)]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "generator").exists()  # it died before the end

    with caplog.at_level("INFO"):
        train_gan(
            parse_gan_args([*FLAGS, "--output_dir", str(tmp_path), "--resume_from_checkpoint", "latest"])
        )
    assert f"Resuming from {tmp_path / resumed_from}" in caplog.text
    if resumed_from == "checkpoint-5":
        assert "Skipping incomplete checkpoint folders" in caplog.text
    generator, ema = uninterrupted
    resumed = load_file(tmp_path / GENERATOR)
    assert resumed.keys() == generator.keys()
    assert all((resumed[key] == generator[key]).all() for key in generator)
    resumed_ema = load_file(tmp_path / "generator_ema" / WEIGHTS)
    assert all((resumed_ema[key] == ema[key]).all() for key in ema)
    # Only complete checkpoints remain, within the limit.
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-20"]


def test_a_new_run_in_another_runs_folder_is_refused_unless_it_resumes_or_overwrites(tmp_path):
    first = [*FLAGS, "--output_dir", str(tmp_path), "--max_train_steps", "5"]
    train_gan(parse_gan_args(first))
    with pytest.raises(ValueError, match="holds the outputs of run .* --overwrite_output_dir"):
        train_gan(parse_gan_args([*first, "--seed", "1"]))
    with pytest.raises(ValueError, match=r"trained with other options \(--seed 0 → 1\)"):
        train_gan(parse_gan_args([*first, "--seed", "1", "--resume_from_checkpoint", "latest"]))
    before = load_file(tmp_path / GENERATOR)

    # Starting anew deletes the other run's checkpoints and models.
    (tmp_path / "checkpoint-3").mkdir()
    train_gan(parse_gan_args([*first, "--seed", "1", "--overwrite_output_dir"]))
    assert not (tmp_path / "checkpoint-3").exists()
    after = load_file(tmp_path / GENERATOR)
    assert any((after[key] != before[key]).any() for key in before)
    # The same run resumes, with a longer schedule and another learning rate.
    train_gan(
        parse_gan_args(
            [*first, "--seed", "1", "--resume_from_checkpoint", "latest", "--max_train_steps", "10"]
            + ["--g_learning_rate", "5e-5"]
        )
    )
    assert (tmp_path / "checkpoint-10").is_dir()
    optimizers = torch.load(tmp_path / "checkpoint-10" / "optimizer.bin", weights_only=True)
    assert [group["lr"] for group in optimizers["param_groups"]] == [5e-5]  # constant schedule


def test_a_resume_warns_when_the_random_states_cannot_be_restored(tmp_path, caplog):
    flags = [*FLAGS, "--output_dir", str(tmp_path), "--max_train_steps", "5"]
    train_gan(parse_gan_args(flags))
    (tmp_path / "checkpoint-5" / "random_states_0.pkl").write_bytes(b"not a pickle")
    with caplog.at_level("WARNING"):
        train_gan(parse_gan_args([*flags, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"]))
    assert "random states of process 0" in caplog.text and "will differ" in caplog.text


def test_an_overflowing_smart_weight_stops_the_run_instead_of_freezing_the_generator(tmp_path):
    # λ = 1e30: the loss stays finite, but squared gradients overflow Adam's second moments.
    # SMaRt acts every 8th step: those steps fail in a row, the ones between them are fine.
    flags = [*FLAGS, "--output_dir", str(tmp_path), "--smart_weight", "1e30", "--max_train_steps", "40"]
    with pytest.raises(RuntimeError, match=r"Stopping: 3 steps in a row \(up to step 16\)"):
        train_gan(parse_gan_args([*flags, "--max_nonfinite_steps", "3"]))
    assert not (tmp_path / "generator").exists()


def test_no_checkpoint_is_written_from_a_non_finite_optimizer_state(tmp_path, monkeypatch, caplog):
    real_apply_update = gan.apply_update
    calls = []

    def corrupting_apply_update(accelerator, optimizer, loss):
        applied = real_apply_update(accelerator, optimizer, loss)
        calls.append(optimizer)
        if len(calls) == 14:  # the generator's update of step 7: its Adam state overflows, losses stay finite
            next(iter(optimizer.state.values()))["exp_avg_sq"].fill_(float("inf"))
        return applied

    monkeypatch.setattr(gan, "apply_update", corrupting_apply_update)
    with caplog.at_level("WARNING"):
        train_gan(parse_gan_args([*FLAGS, "--output_dir", str(tmp_path), "--checkpoints_total_limit", "3"]))
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-5"]
    assert "not finite: no checkpoint is written" in caplog.text


def test_a_run_refused_at_start_up_can_be_started_again(tmp_path):
    flags = [*FLAGS, "--output_dir", str(tmp_path), "--max_train_steps", "2"]
    with pytest.raises(ValueError, match="no-such-unet"):  # refused after the folder was claimed
        train_gan(parse_gan_args([*flags, "--score", "./no-such-unet"]))
    assert (tmp_path / "run.json").is_file()
    train_gan(parse_gan_args(flags))  # not "holds the outputs of another run"
    assert (tmp_path / "generator").is_dir()
