"""benchmarks.digits on tiny settings: trains both methods, judges them over several draws, reuses runs."""

import json
import shutil

import pytest
import torch

from benchmarks import digits as digits_benchmark
from smart_hf.evaluation.precision_recall import density_coverage, precision_recall
from tests.helpers import save_tiny_score

TINY = (
    "--g_base_channels 8 --d_base_channels 8 --train_batch_size 8 --max_train_steps 2 --num_eval_samples 8 "
    "--num_sample_images 4 --checkpointing_steps 0 --save_images_steps 0"
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny benchmark run (seed 0, two draws of 80 images per run) and its printed output."""
    root = tmp_path_factory.mktemp("digits_benchmark")
    extra = f"{TINY} --score {save_tiny_score(root / 'score')}"
    argv = ["--seeds", "0", "--num_samples", "80", "--redraws", "2", "--extra_args", extra]
    argv += ["--method", "SMaRt + wide t=--smart_t_min 50 --smart_t_max 400"]
    rows = digits_benchmark.main([*argv, "--output_dir", str(root / "out")])
    return root / "out", argv, rows


def test_trains_both_methods_from_the_preset_and_judges_each_draw(trained, capsys):
    output_dir, _, rows = trained
    assert list(rows) == ["real digits", "GAN", "GAN + SMaRt", "SMaRt + wide t"]
    for name in ("GAN", "GAN + SMaRt", "SMaRt + wide t"):
        (run,) = rows[name]
        assert run["fd"] > 0 and run["spread"] > 0  # two different draws of 80 images
        assert sum(run["histogram"]) == pytest.approx(1) and run["seconds"] > 0
        assert all(0 <= run[key] <= 1 for key in ("precision", "recall", "coverage")) and run["density"] >= 0
    (real,) = rows["real digits"]
    assert real["precision"] > 0.5 and real["recall"] > 0.5  # one half of the digits against the other
    configs = {
        name: json.loads((output_dir / name / "0" / "metrics.json").read_text())["config"]
        for name in ("GAN", "GAN_SMaRt", "SMaRt_wide_t")
    }
    assert configs["GAN"]["smart_weight"] == 0
    assert (
        configs["GAN_SMaRt"]["smart_weight"] == configs["SMaRt_wide_t"]["smart_weight"] == 0.7
    )  # the preset's
    assert (configs["SMaRt_wide_t"]["smart_t_min"], configs["SMaRt_wide_t"]["smart_t_max"]) == (50, 400)
    assert (configs["GAN_SMaRt"]["smart_t_min"], configs["GAN_SMaRt"]["smart_t_max"]) == (100, 300)
    assert configs["GAN"]["max_train_steps"] == configs["GAN_SMaRt"]["max_train_steps"] == 2
    assert (output_dir / "digits_samples.png").stat().st_size > 0


def test_reuse_judges_the_finished_runs_without_training(trained, monkeypatch, capsys):
    output_dir, argv, rows = trained

    def no_training(*args, **kwargs):
        raise AssertionError("--reuse trained a finished run again")

    monkeypatch.setattr(digits_benchmark, "train_in_subprocess", no_training)
    again = digits_benchmark.main([*argv, "--output_dir", str(output_dir), "--reuse"])
    assert [run["fd"] for run in again["GAN + SMaRt"]] == [run["fd"] for run in rows["GAN + SMaRt"]]
    output = capsys.readouterr().out
    assert "| FD spread between draws (std) |" in output and "80 samples per FD (2 draw(s) per run)" in output
    assert "| precision | recall | recall per seed | density | coverage |" in output
    assert "its recall is" in output


def test_reuse_refuses_a_folder_of_another_seed(trained, tmp_path, monkeypatch):
    output_dir, argv, _ = trained
    shutil.copytree(output_dir / "GAN" / "0", tmp_path / "GAN" / "1")
    monkeypatch.setattr(digits_benchmark, "train_in_subprocess", lambda *args, **kwargs: None)
    argv = [*argv[2:], "--seeds", "1", "--reuse", "--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match="holds a run with seed 0 and lambda 0.0, not seed 1 and lambda 0.0"):
        digits_benchmark.main(argv)


def test_manifold_metrics_average_equal_count_chunks_and_drop_the_remainder():
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(30, 4, generator=generator), torch.randn(70, 4, generator=generator) + 0.5
    chunks = [
        precision_recall(real, part) | density_coverage(real, part) for part in (fake[:30], fake[30:60])
    ]
    expected = {key: (chunks[0][key] + chunks[1][key]) / 2 for key in digits_benchmark.MANIFOLD_METRICS}
    assert digits_benchmark.manifold_metrics(real, fake) == pytest.approx(expected)
    fewer = precision_recall(real, fake[:20]) | density_coverage(real, fake[:20])
    assert digits_benchmark.manifold_metrics(real, fake[:20]) == pytest.approx(fewer)


@pytest.mark.parametrize("argv", [["--redraws", "0"], ["--num_samples", "1"]])
def test_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit):
        digits_benchmark.main(argv)
    assert "--redraws must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "no flags"], "--method takes NAME=FLAGS"),
        (["--method", "GAN=--smart_t_max 400"], "Two methods share a folder name"),
        (
            ["--smart_weights", "0.3", "--method", "GAN + SMaRt (λ 0.3)=--seed 1"],
            "Two methods share a folder name",
        ),
    ],
)
def test_method_rows_need_flags_and_a_folder_of_their_own(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(digits_benchmark, "train_in_subprocess", pytest.fail)  # refused before any training
    with pytest.raises(SystemExit):
        digits_benchmark.main([*argv, "--output_dir", str(tmp_path)])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra", ["--smart_weight 1", "--max_train_steps 2 --smart_weight=1"])
def test_a_lambda_in_extra_args_is_refused_for_it_would_reach_the_plain_gan(extra, capsys):
    with pytest.raises(SystemExit):
        digits_benchmark.main(["--extra_args", extra])
    assert "use --smart_weights" in capsys.readouterr().err
