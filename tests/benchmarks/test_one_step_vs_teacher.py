"""benchmarks.one_step_vs_teacher on tiny settings: an untrained generator vs a random tiny teacher."""

import json
from pathlib import Path

import pytest
import torch

from benchmarks import one_step_vs_teacher as benchmark
from smart_hf import hub
from smart_hf.models import DCGANGenerator
from tests.helpers import save_tiny_score

TINY = {"latent_dim": 8, "resolution": 8, "base_channels": 4, "max_channel_multiplier": 2}
# 100 images, 70 from DDPM (above the 64 feature dimensions), batches of 10, DDPM at 3 steps, DDIM at 4 and 2.
FAST = "--num_samples 100 --ddpm_num_samples 70 --batch_size 10 --ddpm_steps 3 --ddim_steps 4 2".split()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_tiny_score(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def export(tmp_path_factory, teacher):
    """An untrained 8×8 grayscale generator exported with its teacher, as `make demo` writes it: the export
    names the local teacher by its folder name only, the run's metrics.json above it by its path."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    (run / "metrics.json").write_text(json.dumps({"config": {"score": teacher}}))
    folder = run / "pipeline"
    hub.export_pipeline(DCGANGenerator(out_channels=1, **TINY), folder, score_model=teacher, num_samples=0)
    return str(folder)


def test_benchmark_runs(export, tmp_path, capsys):
    results = benchmark.main(["--model", export, *FAST, "--output_dir", str(tmp_path)])
    output = capsys.readouterr().out
    methods = ["SMaRt one-step", "DDPM-3", "DDIM-4", "DDIM-2"]
    assert [row["method"] for row in results["rows"]] == methods
    assert [row["network_evaluations"] for row in results["rows"]] == [1, 3, 4, 2]
    assert [row["num_images"] for row in results["rows"]] == [100, 70, 100, 100]
    assert [row["num_images"] for row in results["equal_count_rows"]] == [70] * 4
    for row in results["rows"] + results["equal_count_rows"]:
        assert row["fd_digits"] > 0 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
        assert row["density"] >= 0 and 0 <= row["coverage"] <= 1
    assert results["rows"][1]["speed_up"] == 1.0
    # The targets compare with DDPM and with the DDIM run of fewest steps, and say honestly whether they hold.
    targets = results["targets"]
    assert (targets["speed_up"]["reference"], targets["fd"]["reference"]) == ("DDPM-3", "DDIM-2")
    assert targets["fd"]["met"] == (results["rows"][0]["fd_digits"] <= results["rows"][3]["fd_digits"])
    assert "| DDPM-3 | 3 | 70 † | — † | — † | — † | — † | — † |" in output
    assert "| FD_digits | precision | recall | density | coverage |" in output
    assert "speed-up vs DDPM-3" in output and "1 torch thread(s)" in output
    assert ("Target 2, quality: FD_digits" in output) and ("NOT met" in output or "met." in output)
    assert (tmp_path / "one_step_vs_teacher.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["targets"] == json.loads(json.dumps(targets))


def test_teacher_of_an_export_in_a_run_folder(export, teacher):
    """The export names its local teacher by folder name only; the run's metrics.json above it, by path."""
    assert json.loads((Path(export) / "smart_hf.json").read_text())["score_model"] == Path(teacher).name
    assert benchmark.recorded_teacher(export) == teacher


def test_teacher_recorded_by_a_training_run(teacher, tmp_path):
    """A training output folder records its teacher in metrics.json; --teacher overrides any record."""
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"score": teacher}}))
    assert benchmark.recorded_teacher(str(tmp_path)) == teacher
    assert benchmark.load_teacher(str(tmp_path), None).unet.config.sample_size == 8
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(ValueError, match="records no teacher; pass --teacher PATH"):
        benchmark.load_teacher(str(tmp_path), None)
    with pytest.raises(ValueError, match="records the teacher 'analytic', which is not a folder here"):
        (tmp_path / "metrics.json").write_text(json.dumps({"config": {"score": "analytic"}}))
        benchmark.load_teacher(str(tmp_path), None)


def test_bad_input(export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no outputs/demo/pipeline here
    with pytest.raises(FileNotFoundError, match="run `make demo` first"):
        benchmark.parse_args([])
    with pytest.raises(FileNotFoundError, match="No model at elsewhere: pass --model PATH"):
        benchmark.parse_args(["--model", "elsewhere"])
    with pytest.raises(ValueError, match="must be a multiple of --batch_size"):
        benchmark.parse_args(
            ["--model", export, "--num_samples", "90", "--ddpm_num_samples", "40", "--batch_size", "20"]
        )
    with pytest.raises(ValueError, match="--ddpm_num_samples <= --num_samples"):
        benchmark.parse_args(["--model", export, "--num_samples", "100", "--ddpm_num_samples", "200"])
    # A 16×16 teacher cannot be compared with an 8×8 generator on the digits.
    big_teacher = save_tiny_score(tmp_path / "big", resolution=16)
    with pytest.raises(ValueError, match="Shapes differ .* the teacher 1×16×16"):
        benchmark.main(["--model", export, "--teacher", big_teacher, *FAST])
