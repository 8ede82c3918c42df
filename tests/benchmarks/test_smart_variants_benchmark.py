"""benchmarks.smart_variants scores finished runs from their samples and reuses the toy benchmark's runs."""

import numpy as np
import pytest
import torch
import yaml

from benchmarks import smart_variants
from smart_hf.toy2d import load_toy_dataset


def save_samples(folder, points):
    folder.mkdir(parents=True)
    np.save(folder / "samples.npy", np.asarray(points, dtype=np.float32))


def test_scores_runs_and_falls_back_to_the_toy_benchmarks_gan_and_smart_runs(tmp_path, capsys):
    dataset = load_toy_dataset("grid9_weighted")
    counts = (dataset.weights * 1000).round().long()
    exact = torch.repeat_interleave(dataset.means, counts, dim=0)  # every mode at its share, on its mean
    only_heaviest = dataset.means[-1:].expand(1000, 2)
    save_samples(tmp_path / "mine" / "grid9_weighted" / "smart_dm3" / "0", exact)
    save_samples(tmp_path / "toy2d" / "grid9_weighted" / "GAN" / "0", only_heaviest)

    smart_variants.main(
        [
            "--no_train",
            "--mixtures",
            "grid9_weighted",
            "--methods",
            "gan",
            "smart",
            "smart_dm3",
            "--seeds",
            "0",
        ]
        + ["--output_dir", str(tmp_path / "mine"), "--baseline_dir", str(tmp_path / "toy2d")]
        + ["--figure", str(tmp_path / "figure.png")]
        + ["--samples_figures", str(tmp_path / "samples_{mixture}.png")]
    )
    rows = {line.split(" (")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert "smart" not in rows  # no run anywhere
    assert "9.0 ± 0.0 / 9" in rows["smart_dm3"] and "s0: 100.0 / 0.1 / " in rows["smart_dm3"]
    assert (
        "1.0 ± 0.0 / 9" in rows["gan"] and f"s0: 100.0 / {100 * (1 - dataset.weights[-1]):.1f}" in rows["gan"]
    )
    assert (tmp_path / "figure.png").stat().st_size > 0
    assert (tmp_path / "samples_grid9_weighted.png").stat().st_size > 0  # true data, gan and smart_dm3


def test_every_method_trains_from_the_preset_with_its_own_flags():
    assert smart_variants.METHODS["gan"] == ["--smart_weight", "0"]
    for method, flags in smart_variants.METHODS.items():
        assert ("--fake_score" in flags) == ("dm" in method)
        assert ("--smart_weight" in flags and flags[flags.index("--smart_weight") + 1] == "0") == (
            method in ("gan", "dm1", "dm3")
        )


def test_the_lambda_sweep_is_the_paper_form_at_each_weight_and_the_toy_benchmarks_smart_is_the_preset():
    for method, weight in smart_variants.LAMBDA_SWEEP.items():
        assert smart_variants.METHODS[method] == ["--smart_weight", f"{weight:g}"]
    with open(smart_variants.PRESET) as f:
        preset_weight = yaml.safe_load(f)["smart_weight"]
    (reused,) = [m for m, folder in smart_variants.BASELINE_FOLDERS.items() if folder == "analytic_score"]
    assert smart_variants.METHODS[reused] == ["--smart_weight", f"{preset_weight:g}"]


@pytest.mark.parametrize("method", ["gan", "smart_w0.03"])
def test_own_runs_win_over_the_toy_benchmarks(tmp_path, method):
    save_samples(tmp_path / "mine" / "grid25" / method / "1", np.zeros((4, 2)))
    save_samples(
        tmp_path / "toy2d" / "grid25" / smart_variants.BASELINE_FOLDERS[method] / "1", np.zeros((4, 2))
    )
    folder = smart_variants.run_dir(str(tmp_path / "mine"), "grid25", method, 1, str(tmp_path / "toy2d"))
    assert folder == str(tmp_path / "mine" / "grid25" / method / "1")


def run(hq, w1, tv, modes=9):
    return {
        "high_quality_percent": hq,
        "sliced_wasserstein": w1,
        "mass_tv_percent": tv,
        "modes_covered_quarter": modes,
        "num_modes": 9,
    }


GAN_RUNS = [run(90.0, 0.10, 8.0), run(92.0, 0.20, 10.0)]  # means 91, 0.15, 9; stds 1, 0.05, 1


@pytest.mark.parametrize(
    "runs, verdict",
    [
        ([run(91.5, 0.20, 10.0)] * 2, "met"),  # W1 and TV at the GAN's mean + std: within one std
        ([run(91.0, 0.10, 5.0)] * 2, "missed: HQ"),  # HQ must be above the GAN's
        ([run(95.0, 0.21, 10.1)] * 2, "missed: W1, TV"),
        ([run(95.0, 0.10, 5.0), run(95.0, 0.10, 5.0, modes=8)], "missed: modes"),  # a mode lost on one seed
    ],
)
def test_target_verdict_against_the_plain_gan(runs, verdict):
    assert smart_variants.target_verdict(runs, GAN_RUNS) == verdict
