import json

import pytest
import torch
import train_smart_gan

from smart_hf.models.toy_mlp import MLPNoisePredictor

TINY = ["--max_train_steps", "20", "--train_batch_size", "32", "--hidden_dim", "16", "--num_layers", "1",
        "--num_eval_samples", "100", "--logging_steps", "5"]


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
    results = run(tmp_path / "run", "--score", str(tmp_path / "score"), "--smart_gradient", "sds",
                  "--dataset_name", "ring8")
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
    MLPNoisePredictor(data_dim=3, hidden_dim=16, num_layers=1).save_pretrained(tmp_path / "score" / "score_model")
    with pytest.raises(ValueError, match=r"shape \(2,\) but the score model expects \(3,\)"):
        run(tmp_path / "run", "--score", str(tmp_path / "score"))
