import json

import pytest
import torch
import train_smart_gan

from smart_hf.models.toy_mlp import MLPNoisePredictor, ToyGenerator

TINY = (
    "--max_train_steps 20 --train_batch_size 32 --hidden_dim 16 --num_layers 1 --num_eval_samples 100 "
    "--logging_steps 5"
).split()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run several times faster on one thread than on two when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(tmp_path, *flags):
    return train_smart_gan.main(train_smart_gan.parse_args([*TINY, "--output_dir", str(tmp_path), *flags]))


def test_toy_run_writes_generator_metrics_and_plot(tmp_path):
    results = run(tmp_path, "--smart_interval", "1", "--r1_gamma", "0.1", "--r1_interval", "2")
    assert (tmp_path / "generator" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "samples.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["modes_covered"] == results["modes_covered"] and saved["num_modes"] == 25


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


class FlakyGANLoss(train_smart_gan.GANLoss):
    """Makes the generator loss NaN at the given generator steps (all steps when `nan_steps` is None)."""

    nan_steps: set[int] | None = set()

    def generator_phase(self, latents, step, class_labels=None):
        terms = super().generator_phase(latents, step, class_labels)
        if self.nan_steps is None or step in self.nan_steps:
            terms.total = terms.total * float("nan")
        return terms


def test_nonfinite_steps_are_skipped_and_logged(tmp_path, monkeypatch):
    monkeypatch.setattr(FlakyGANLoss, "nan_steps", {3, 4, 10})
    monkeypatch.setattr(train_smart_gan, "GANLoss", FlakyGANLoss)
    results = run(tmp_path, "--max_nonfinite_steps", "3")
    assert results["nonfinite_steps"] == 3
    generator = ToyGenerator.from_pretrained(tmp_path / "generator")
    assert all(torch.isfinite(p).all() for p in generator.parameters())  # the NaN steps were not applied


def test_too_many_nonfinite_steps_in_a_row_stop_at_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(FlakyGANLoss, "nan_steps", set(range(6, 20)))
    monkeypatch.setattr(train_smart_gan, "GANLoss", FlakyGANLoss)
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
