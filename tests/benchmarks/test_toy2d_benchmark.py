"""benchmarks.toy2d on a tiny budget: every method trains from the preset and keeps its defining flags."""

import json

import pytest

from benchmarks import toy2d
from smart_hf.toy2d import TOY_DATASETS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_methods_keep_their_own_lambda_and_score_whatever_the_extra_args(tmp_path):
    """A --smart_weight in --extra_args sets SMaRt's lambda; the plain GAN keeps 0 (its flag comes last)."""
    extra = "--max_train_steps 3 --smart_warmup_start 0 --smart_warmup_steps 0 --smart_weight 1.5"
    rows = toy2d.main(["--seeds", "0", "--extra_args", extra, "--output_dir", str(tmp_path)])["grid25"]
    assert list(rows) == [
        "true data",
        "GAN",
        "GAN + SMaRt (analytic score)",
        "GAN + SMaRt (learned score)",
    ]
    configs = {
        folder: json.loads((tmp_path / "grid25" / folder / "0" / "metrics.json").read_text())["config"]
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
    rows = toy2d.main([*argv, "--output_dir", str(tmp_path)])["grid25"]
    assert list(rows) == ["true data", "GAN + SMaRt (analytic score)"]
    assert sorted(path.name for path in (tmp_path / "grid25").iterdir()) == ["analytic_score"]


def test_learned_is_refused_where_no_learned_score_is_shipped(capsys):
    with pytest.raises(SystemExit):
        toy2d.main(["--dataset_name", "ring8", "--methods", "learned"])
    assert "No learned score is shipped for ring8" in capsys.readouterr().err


@pytest.mark.parametrize("extra", ["--score analytic", "--score=analytic"])
def test_a_score_in_extra_args_is_refused(extra, capsys):
    with pytest.raises(SystemExit):
        toy2d.main([f"--extra_args={extra}"])
    assert "must not set --score" in capsys.readouterr().err


TINY = "--max_train_steps 2 --hidden_dim 16 --d_hidden_dim 16 --num_layers 1 --num_eval_samples 200"


def test_family_mixture_with_a_method_by_flags_then_cached_runs_are_not_trained_again(tmp_path, monkeypatch):
    argv = ["--mixtures", "grid9_weighted", "--methods", "gan", "--seeds", "0", "--extra_args", TINY]
    argv += ["--method", "wide t=--smart_t_max 400", "--output_dir", str(tmp_path)]
    results = toy2d.main(argv)
    rows = results["grid9_weighted"]
    assert list(rows) == ["true data", "GAN", "wide t"]
    run = tmp_path / "grid9_weighted" / "wide_t" / "0"
    config = json.loads((run / "metrics.json").read_text())["config"]
    assert (config["dataset_name"], config["smart_t_max"], config["max_train_steps"]) == (
        "grid9_weighted",
        400,
        2,
    )
    assert json.loads((run / "benchmark.json").read_text())["wall_seconds"] > 0
    (wide,) = rows["wide t"]
    assert wide["num_modes"] == 9 and 0 <= wide["mass_tv_percent"] <= 100 and len(wide["mode_counts"]) == 9
    assert rows["true data"][0]["mass_tv_percent"] < 5  # fresh data has the weights' shares
    assert (tmp_path / "grid9_weighted_samples.png").stat().st_size > 0

    trained = []
    real_train = toy2d.train_in_subprocess
    monkeypatch.setattr(
        toy2d,
        "train_in_subprocess",
        lambda flags, *a, **k: trained.append(flags) or real_train(flags, *a, **k),
    )
    again = toy2d.main([*argv, "--method", "low t=--smart_t_max 60"])["grid9_weighted"]
    assert len(trained) == 1 and trained[0][-2:] == ["--smart_t_max", "60"]  # only the new method trained
    assert again["wide t"][0]["mode_counts"] == wide["mode_counts"]
    listed = toy2d.main([*argv, "--seeds", "0", "1", "--no_train"])["grid9_weighted"]
    assert len(trained) == 1 and [len(listed[name]) for name in ("GAN", "wide t")] == [
        1,
        1,
    ]  # seed 1 left out
    tiny = ["--config", toy2d.PRESET, "--dataset_name", "grid9_weighted", "--seed", "0", *TINY.split()]
    assert toy2d.is_cached(str(run), [*tiny, "--smart_t_max", "400"])
    assert not toy2d.is_cached(str(run), [*tiny, "--smart_t_max", "300"])
    assert not toy2d.is_cached(str(run), [*tiny, "--max_train_steps", "3", "--smart_t_max", "400"])


def test_all_mixtures_and_bad_mixtures_or_methods(capsys):
    assert toy2d.parse_args(["--mixtures", "all"]).mixtures == list(TOY_DATASETS)
    assert len(TOY_DATASETS) >= 6
    assert toy2d.parse_args(["--methods"]).methods == []  # only the --method ones
    for argv, message in [
        (["--mixtures", "moons"], "Unknown mixtures ['moons']"),
        (["--method", "no flags"], "--method takes NAME=FLAGS"),
        (["--method", "a b=--smart_t_max 60", "--method", "a+b=--smart_t_max 70"], "needs a name of its own"),
        (["--method", "GAN=--smart_t_max 60"], "needs a name of its own"),
    ]:
        with pytest.raises(SystemExit):
            toy2d.parse_args(argv)
        assert message in capsys.readouterr().err


def test_summary_table_is_mean_and_std_over_seeds():
    def run(covered, hq, tv, lightest, seed=1):
        return {
            "config": {"seed": seed},
            "modes_covered_quarter": covered,
            "modes_covered": 9,
            "num_modes": 9,
            "high_quality_percent": hq,
            "sliced_wasserstein": 0.1,
            "mass_tv_percent": tv,
            "lightest_mode_ratio": lightest,
        }

    table = toy2d.summary_table({"GAN": [run(8, 90.0, 4.0, 0.5), run(9, 92.0, 6.0, 0.7)]})
    assert (
        "| GAN | 8.5 ± 0.5 / 9 | 91.0 ± 1.0 | 0.100 ± 0.000 | 5.0 ± 1.0 | 0.60 ± 0.10 | 9.0 ± 0.0 | — |"
        in table
    )
    seeds = toy2d.seed_table({"GAN": [run(8, 90.0, 4.0, 0.5, seed=0), run(9, 92.0, 6.0, 0.7)]})
    assert "| GAN | 1 | 9/9 | 92.0 | 0.100 | 6.0 | 0.70 |" in seeds
