"""benchmarks.toy2d_batch_norm: a toy generator scored with its running and with per-batch statistics."""

import json

import pytest

from benchmarks import toy2d, toy2d_batch_norm
from smart_hf.models.toy_mlp import ToyGenerator

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_RUN = "--max_train_steps 6 --hidden_dim 16 --num_layers 1"


def test_running_statistics_score_as_the_run_and_batch_statistics_differ(tmp_path, capsys):
    toy2d.main(["--seeds", "1", "--methods", "gan", "--extra_args", TINY_RUN, "--output_dir", str(tmp_path)])
    run_dir = toy2d.run_dir(str(tmp_path), "grid25", "GAN", 1)
    results = toy2d_batch_norm.main([run_dir, "--batch_size", "32"])[run_dir]
    with open(f"{run_dir}/metrics.json") as f:
        final = json.load(f)
    assert results["running"]["high_quality_percent"] == pytest.approx(final["high_quality_percent"])
    assert results["running"]["sliced_wasserstein"] == pytest.approx(final["sliced_wasserstein"])
    assert results["batch"]["sliced_wasserstein"] != pytest.approx(final["sliced_wasserstein"], rel=1e-3)
    assert "| statistics of each batch of 32 |" in capsys.readouterr().out


def test_runs_without_batch_norm_or_metrics_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json not found"):
        toy2d_batch_norm.main([str(tmp_path)])
    ToyGenerator(latent_dim=2, hidden_dim=16, num_layers=1).save_pretrained(tmp_path / "generator")
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"dataset_name": "grid25"}}))
    with pytest.raises(ValueError, match="has no BatchNorm: it was trained without --generator_batch_norm"):
        toy2d_batch_norm.main([str(tmp_path)])
