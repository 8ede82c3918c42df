"""benchmarks.scale at tiny sizes: plain and SMaRt steps timed in fresh processes, the per-interval averages,
peak memory, and the readings against the issue's targets."""

import json
import time

import pytest
import torch

from benchmarks import scale


def test_tiny_run_reports_steps_intervals_memory_and_the_bf16_loss(tmp_path, capsys):
    output = tmp_path / "results.json"
    results = scale.main(
        "--tiny --parts cifar10 --configs full full_bf16 --repeats 1 --output".split() + [str(output)]
    )
    printed = capsys.readouterr().out
    assert f"Device: {scale.device_name('cpu')} (cpu)" in printed and "peak RSS" in printed
    cifar = results["cifar10"]
    assert list(cifar) == ["full", "full_bf16"]
    for name, result in cifar.items():
        assert result["plain"] > 0 and result["smart"] > 0 and result["peak_mib"] >= 0
        cells = scale.cost_cells(result)
        assert f"| {scale.CONFIGS[name][0]} | {' | '.join(cells)} |" in printed
    full = cifar["full"]
    eight = scale.interval_average(full["plain"], full["smart"], 8)
    assert f"{eight:.3f} ({eight / full['plain']:.2f}×)" in printed
    assert cifar["full_bf16"]["case"]["precision"] == "bf16"
    loss_32, loss_16 = full["smart_loss"], cifar["full_bf16"]["smart_loss"]
    assert loss_16 != loss_32 and abs(loss_16 - loss_32) / loss_32 < 0.02  # computed in bf16, close to fp32
    assert json.loads(output.read_text())["cifar10"]["full"]["smart"] == full["smart"]


def test_interval_average_applies_smart_on_one_step_in_k():
    assert scale.interval_average(1.0, 3.0, 1) == 3.0
    assert scale.interval_average(1.0, 3.0, 8) == pytest.approx(1.25)


def test_readings_compare_with_the_targets():
    results = {
        "full": {"plain": 1.0, "smart": 3.0, "peak_mib": 100.0, "smart_loss": 1.0},
        "full_gc": {"plain": 1.1, "smart": 2.1, "peak_mib": 55.0, "smart_loss": 1.0},
        "full_bf16": {"plain": 0.5, "smart": 1.2, "peak_mib": 60.0, "smart_loss": 1.03},
    }
    lines = scale.readings(results)
    assert "- SMaRt full (the paper's form): interval 8 costs 1.25× a plain step (misses ≤ 1.15×)." in lines
    assert (
        "- SMaRt full, gradient checkpointing: interval 8 costs 1.11× a plain step (meets ≤ 1.15×)." in lines
    )
    assert "- Gradient checkpointing cuts a SMaRt step's peak memory by 45% (target ≥ 40%)." in lines
    assert any("bf16 SMaRt loss differs from fp32 by 3.00%" in line for line in lines)


def test_peak_memory_sees_a_tensor_allocated_between_start_and_stop():
    memory = scale.PeakMemory(torch.device("cpu"))
    memory.start()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written
    time.sleep(0.05)
    del block
    assert memory.stop() >= 60


def test_shrink_quality_table_averages_the_runs_of_each_shrink(tmp_path, capsys):
    runs = {(1, 0): 3.0, (1, 1): 5.0, (4, 0): 6.0, (4, 1): 6.5}
    for (shrink, seed), fd in runs.items():
        run_dir = tmp_path / f"shrink{shrink}_seed{seed}"
        run_dir.mkdir()
        config = {"smart_batch_shrink": shrink, "seed": seed}
        metrics = {"fd_digits": fd, "precision": 0.5 + seed / 10, "recall": 0.9, "config": config}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    scale.main(["--shrink_runs", *(str(path) for path in sorted(tmp_path.iterdir()))])
    printed = capsys.readouterr().out
    assert "| 1 | 2 | 4.00 ± 1.00 | 0.550 ± 0.050 | 0.900 ± 0.000 | 3.00, 5.00 |" in printed
    assert "| 4 | 2 | 6.25 ± 0.25 | 0.550 ± 0.050 | 0.900 ± 0.000 | 6.00, 6.50 |" in printed
