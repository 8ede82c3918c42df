"""benchmarks.common: the runners, metrics, job pools, tables, judges and figures the scripts share."""

import json
import threading

import matplotlib.pyplot as plt
import pytest
import torch

from benchmarks import common
from smart_hf import hub
from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics
from smart_hf.models import DCGANGenerator
from smart_hf.toy2d import load_toy_dataset

# Stands in for training/train_smart_gan.py: writes a metrics.json that echoes its flags to --output_dir.
FAKE_TRAIN_SCRIPT = """
import json, os, sys
output_dir = sys.argv[sys.argv.index("--output_dir") + 1]
os.makedirs(output_dir)
with open(os.path.join(output_dir, "metrics.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "threads": os.environ.get("OMP_NUM_THREADS")}, f)
"""
TINY_TOY_RUN = (
    "--dataset_name grid25 --hidden_dim 16 --num_layers 1 --train_batch_size 32 --num_eval_samples 200 "
    "--max_train_steps 2 --checkpointing_steps 0"
).split()


def test_mean_std_is_the_mean_and_population_std():
    assert common.mean_std([1, 2, 3], ".2f") == "2.00 ± 0.82"
    assert common.mean_std([0.1, 0.3], ".3f") == "0.200 ± 0.100"
    assert common.mean_std([7], ".0f") == "7 ± 0"


def test_markdown_table():
    table = common.markdown_table(["method", "FD"], [["GAN", 1.5], ["GAN + SMaRt", "—"]])
    assert table == "| method | FD |\n|---|---|\n| GAN | 1.5 |\n| GAN + SMaRt | — |"
    assert common.markdown_table(["t"], []) == "| t |\n|---|"


def test_toy_table_of_known_runs():
    true_data = {
        "modes_covered": 25,
        "num_modes": 25,
        "high_quality_percent": 90.0,
        "sliced_wasserstein": 0.01,
    }
    runs = [
        {"modes_covered": 24, "num_modes": 25, "high_quality_percent": 80.0, "sliced_wasserstein": 0.1},
        {"modes_covered": 22, "num_modes": 25, "high_quality_percent": 70.0, "sliced_wasserstein": 0.3},
    ]
    runs[0]["wall_seconds"], runs[1]["wall_seconds"] = 10.0, 20.0
    assert common.toy_table({"true data": [true_data], "GAN": runs}) == (
        "| method | modes covered | high-quality % | sliced W1 | per-seed modes | wall time per run (s) |\n"
        "|---|---|---|---|---|---|\n"
        "| true data | 25.0 ± 0.0 / 25 | 90.0 ± 0.0 | 0.010 ± 0.000 | 25 | — |\n"
        "| GAN | 23.0 ± 1.0 / 25 | 75.0 ± 5.0 | 0.200 ± 0.100 | 24, 22 | 15 ± 5 |"
    )


def test_read_metrics(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"fd": 2.5, "config": {"seed": 3}}))
    assert common.read_metrics(str(tmp_path)) == {"fd": 2.5, "config": {"seed": 3}}
    with pytest.raises(
        FileNotFoundError, match="metrics.json not found: pass the output folder of a finished"
    ):
        common.read_metrics(str(tmp_path / "missing"))


def test_train_in_subprocess_runs_a_fresh_run_of_the_training_script_in_the_output_dir(tmp_path, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(FAKE_TRAIN_SCRIPT)
    monkeypatch.setattr(common, "TRAIN_SCRIPT", str(script))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    metrics = common.train_in_subprocess(["--seed", "1"], str(tmp_path / "a"))
    assert metrics["argv"] == ["--seed", "1", "--output_dir", str(tmp_path / "a"), "--overwrite_output_dir"]
    assert metrics["threads"] is None and metrics["wall_seconds"] > 0
    assert common.train_in_subprocess([], str(tmp_path / "b"), single_thread=True)["threads"] == "1"


def test_a_failed_training_script_raises_with_the_end_of_its_stderr(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit('out of digits')\n")
    with pytest.raises(RuntimeError, match=r"Training failed: .*fail.py --seed 1\nout of digits"):
        common.run_training_script([str(script), "--seed", "1"])


@pytest.mark.usefixtures("one_thread")
def test_train_in_process_returns_the_results_and_the_wall_time(tmp_path):
    results = common.train_in_process([*TINY_TOY_RUN, "--output_dir", str(tmp_path)])
    assert results["global_step"] == 2 and results["wall_seconds"] > 0
    assert results["modes_covered"] == json.loads((tmp_path / "metrics.json").read_text())["modes_covered"]


def test_run_jobs_runs_jobs_at_a_time_and_keeps_the_order():
    both_started = threading.Barrier(2, timeout=10)  # broken unless two jobs run at once

    def job(item: int) -> int:
        both_started.wait()
        return 10 * item

    assert list(common.run_jobs(job, [1, 2], jobs=2)) == [10, 20]
    assert list(common.run_jobs(lambda item: -item, range(5), jobs=1)) == [0, -1, -2, -3, -4]


def test_true_samples_and_eval_latents_are_seeded():
    samples = common.true_samples(load_toy_dataset("grid25"))
    assert samples.shape == (2500, 2) and torch.equal(
        samples, common.true_samples(load_toy_dataset("grid25"))
    )
    latents = common.eval_latents({"seed": 3, "num_eval_samples": 5, "latent_dim": 2})
    assert torch.equal(latents, torch.randn(5, 2, generator=torch.Generator().manual_seed(3)))


def test_judge_digits_on_real_digits():
    extractor = DigitsFeatureExtractor()
    real = common.real_digits()
    assert real.shape == (1797, 1, 8, 8) and real.min() == -1 and real.max() == 1
    reference = FeatureStatistics.from_features(extractor.extract(real))
    verdict = common.judge_digits(extractor, real, reference)
    assert verdict["fd"] == pytest.approx(0, abs=1e-3) and verdict["covered"] == 10
    assert verdict["histogram"].sum() == pytest.approx(1)
    # Samples of a single digit cover that digit only.
    zeros = real[extractor.predict(real) == 0]
    verdict = common.judge_digits(extractor, zeros, reference)
    assert verdict["covered"] == 1 and verdict["histogram"][0] == 1 and verdict["fd"] > 1


def test_sample_images_are_8_bit_and_seeded(tmp_path):
    torch.manual_seed(0)
    generator = DCGANGenerator(
        out_channels=1, latent_dim=8, resolution=8, base_channels=4, max_channel_multiplier=2
    )
    hub.export_pipeline(generator, tmp_path, num_samples=0)
    images = common.sample_images(str(tmp_path), 5, seed=1)
    assert images.shape == (5, 1, 8, 8) and torch.equal(
        images, common.sample_images(str(tmp_path), 5, seed=1)
    )
    pixels = (images + 1) * 127.5
    assert torch.allclose(pixels, pixels.round(), atol=1e-4)


def test_digits_grid_tiles_the_first_channel_in_rows_of_8():
    images = -torch.ones(3, 1, 8, 8)
    images[1] = 1
    grid = common.digits_grid(images)
    assert (grid.mode, grid.size) == ("L", (3 * 66 + 2, 66 + 2))  # 8×8 tiles enlarged to 64, 2 px apart
    assert (grid.getpixel((2 + 5, 5)), grid.getpixel((2 + 66 + 5, 5))) == (0, 255)
    assert common.digits_grid(-torch.ones(100, 1, 8, 8)).size == (8 * 66 + 2, 8 * 66 + 2)  # 64 images


def test_point_drawer_frames_the_modes_with_a_margin():
    fig, ax = plt.subplots()
    common.point_drawer(load_toy_dataset("grid25"))(ax, torch.zeros(10, 2).numpy())
    assert ax.get_xlim() == pytest.approx((-5.6, 5.6)) and ax.get_ylim() == pytest.approx((-5.6, 5.6))
    plt.close(fig)


def test_save_panels_draws_each_panel_in_order(tmp_path):
    drawn = []
    common.save_panels(
        {"real": 1, "GAN": 2}, lambda ax, panel: drawn.append(panel), str(tmp_path / "f.png"), (2, 2)
    )
    assert drawn == [1, 2] and (tmp_path / "f.png").stat().st_size > 0


def test_argument_parser_shows_the_docstring_as_written():
    usage = "Trains.\n\n    python -m benchmarks.x --jobs 2   # two at a time\n"
    assert usage in common.argument_parser(usage).format_help()
