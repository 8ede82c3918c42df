"""benchmarks.ablations on tiny settings: every technique alone and with SMaRt, on both parts."""

import json

import pytest

from benchmarks import ablations
from tests.helpers import save_tiny_score

TINY_TOY = "--hidden_dim 16 --train_batch_size 32 --num_eval_samples 200"
TINY_DIGITS = (
    "--g_base_channels 8 --d_base_channels 8 --train_batch_size 8 --num_eval_samples 8 --num_sample_images 4"
)
TOY_METHODS = ["GAN", "Diffusion-GAN", "NICE", "NATS", "TTUR"]
DIGITS_METHODS = ["GAN", "Diffusion-GAN", "NICE", "MaskedGAN (both)", "NATS", "TTUR"]


pytestmark = pytest.mark.usefixtures("one_thread")


def with_smart(labels):
    return [label for name in labels for label in (name, f"{name} + SMaRt")]


def run_settings(output_dir, method, seed):
    return json.loads((output_dir / method / str(seed) / "metrics.json").read_text())["config"]


def test_grid25_every_technique_alone_and_with_smart(tmp_path, capsys):
    argv = ["--parts", "grid25", "--steps", "4", "--seeds", "0", "1", "--extra_args", TINY_TOY]
    report = ablations.main([*argv, "--output_dir", str(tmp_path)])
    output = capsys.readouterr().out

    rows = report["parts"]["grid25"]["rows"]
    assert list(rows) == ["true data", *with_smart(TOY_METHODS)]  # MaskedGAN works on images only
    for label, runs in list(rows.items())[1:]:
        assert [run["seed"] for run in runs] == [0, 1] and {run["global_step"] for run in runs} == {4}
        assert all(0 <= run["modes_covered"] <= 25 and run["sliced_wasserstein"] > 0 for run in runs)
        assert f"| {label} | " in output
    # Alone: SMaRt off; with SMaRt: the toy recipe's. Each technique's switch, TTUR's rates over the recipe's.
    out = tmp_path / "grid25"
    assert run_settings(out, "plain", 1)["smart_weight"] == 0
    assert run_settings(out, "plain_smart", 1)["smart_weight"] == 0.01
    assert run_settings(out, "plain_smart", 1)["score"] == "analytic"
    diffusion = run_settings(out, "diffusion_gan_smart", 0)
    assert diffusion["diffusion_gan"] and diffusion["diffusion_gan_sigma"] == 0.2
    assert run_settings(out, "nice", 0)["nice"] and run_settings(out, "nats", 0)["nats"]
    ttur, plain = run_settings(out, "ttur", 0), run_settings(out, "plain", 0)
    assert (ttur["g_learning_rate"], ttur["d_learning_rate"], ttur["d_adam_betas"]) == (
        1e-4,
        3e-4,
        [0.0, 0.9],
    )
    assert (plain["g_learning_rate"], plain["d_learning_rate"], plain["d_adam_betas"]) == (
        5e-4,
        5e-4,
        [0.0, 0.99],
    )
    assert plain["hidden_dim"] == 16 and plain["max_train_steps"] == 4

    assert "grid25: 4 generator steps, seeds [0, 1]" in output and "Total wall time" in output
    assert (tmp_path / "ablations_grid25.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["parts"]["grid25"]["rows"]["NICE + SMaRt"][1]["high_quality_percent"] == pytest.approx(
        rows["NICE + SMaRt"][1]["high_quality_percent"]
    )


def test_digits_small_data_every_technique_alone_and_with_smart(tmp_path, capsys):
    score = save_tiny_score(tmp_path / "score")
    argv = ["--parts", "digits", "--steps", "3", "--digits_train_samples", "70", "--num_samples", "70"]
    argv += ["--extra_args", f"--score {score} {TINY_DIGITS}", "--output_dir", str(tmp_path / "out")]
    report = ablations.main(argv)
    output = capsys.readouterr().out

    part = report["parts"]["digits"]
    assert part["seeds"] == [0] and part["train_samples"] == 70
    training_row, *methods = part["rows"]
    assert training_row == "training subset: 70 real digits (seed 0)"
    assert methods == with_smart(DIGITS_METHODS)
    for label in methods:
        (run,) = part["rows"][label]
        assert run["num_train_images"] == 70 and run["global_step"] == 3
        assert run["fd"] > 0 and 0 <= run["covered"] <= 10 and sum(run["histogram"]) == pytest.approx(1)
        assert f"| {label} | " in output
    out = tmp_path / "out" / "digits"
    assert run_settings(out, "masked_gan", 0)["masked_gan"] == "both"
    assert run_settings(out, "masked_gan", 0)["smart_weight"] == 0
    preset = run_settings(out, "masked_gan_smart", 0)
    assert (preset["smart_weight"], preset["smart_gradient"], preset["smart_interval"]) == (0.3, "full", 1)
    assert preset["max_train_samples"] == 70 and preset["score"] == score
    assert "FD_digits against all 1,797 digits" in output
    assert (tmp_path / "out" / "ablations_digits.png").stat().st_size > 0


def test_parallel_runs_match_runs_in_turn(tmp_path):
    """--jobs 2 trains in forked one-thread workers; the results equal those of runs in this process."""
    argv = [
        "--parts",
        "grid25",
        "--techniques",
        "plain",
        "--steps",
        "4",
        "--seeds",
        "0",
        "--extra_args",
        TINY_TOY,
    ]
    in_turn = ablations.main([*argv, "--output_dir", str(tmp_path / "a")])
    parallel = ablations.main([*argv, "--output_dir", str(tmp_path / "b"), "--jobs", "2"])
    for label in ("GAN", "GAN + SMaRt"):
        (first,), (second,) = (report["parts"]["grid25"]["rows"][label] for report in (in_turn, parallel))
        assert first["high_quality_percent"] == second["high_quality_percent"]
        assert first["sliced_wasserstein"] == second["sliced_wasserstein"]


@pytest.mark.parametrize(
    "argv", [["--jobs", "0"], ["--steps", "0"], ["--digits_train_samples", "0"], ["--parts", "cifar10"]]
)
def test_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit):
        ablations.parse_args(argv)
    assert "error" in capsys.readouterr().err
