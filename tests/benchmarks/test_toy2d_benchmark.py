"""benchmarks.toy2d on a tiny budget: every method trains from the preset and keeps its defining flags."""

import json

import pytest

from benchmarks import toy2d

pytestmark = pytest.mark.usefixtures("one_thread")


def test_methods_keep_their_own_lambda_and_score_whatever_the_extra_args(tmp_path):
    """A --smart_weight in --extra_args sets SMaRt's lambda; the plain GAN keeps 0 (its flag comes last)."""
    extra = "--max_train_steps 3 --smart_warmup_start 0 --smart_warmup_steps 0 --smart_weight 1.5"
    rows = toy2d.main(["--seeds", "0", "--extra_args", extra, "--output_dir", str(tmp_path)])
    assert list(rows) == [
        "true data",
        "GAN",
        "GAN + SMaRt (analytic score)",
        "GAN + SMaRt (learned score)",
    ]
    configs = {
        folder: json.loads((tmp_path / folder / "0" / "metrics.json").read_text())["config"]
        for folder in ("GAN", "analytic_score", "learned_score")
    }
    assert configs["GAN"]["smart_weight"] == 0
    assert configs["analytic_score"]["smart_weight"] == configs["learned_score"]["smart_weight"] == 1.5
    assert configs["analytic_score"]["score"] == "analytic"
    assert configs["learned_score"]["score"].endswith("grid25-mlp")
    assert {config["max_train_steps"] for config in configs.values()} == {3}
    assert all(0 <= run["high_quality_percent"] <= 100 for (run,) in list(rows.values())[1:])
    assert (tmp_path / "grid25_samples.png").stat().st_size > 0


def test_methods_selects_which_to_train(tmp_path):
    argv = ["--seeds", "0", "--methods", "analytic", "--extra_args", "--max_train_steps 2"]
    rows = toy2d.main([*argv, "--output_dir", str(tmp_path)])
    assert list(rows) == ["true data", "GAN + SMaRt (analytic score)"]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["analytic_score"]


def test_learned_is_refused_where_no_learned_score_is_shipped(capsys):
    with pytest.raises(SystemExit):
        toy2d.main(["--dataset_name", "ring8", "--methods", "learned"])
    assert "No learned score is shipped for ring8" in capsys.readouterr().err


@pytest.mark.parametrize("extra", ["--score analytic", "--score=analytic"])
def test_a_score_in_extra_args_is_refused(extra, capsys):
    with pytest.raises(SystemExit):
        toy2d.main([f"--extra_args={extra}"])
    assert "must not set --score" in capsys.readouterr().err
