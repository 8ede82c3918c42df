"""benchmarks.toy2d_trajectory: every checkpoint of a finished toy run scored like the final generator."""

import json

import pytest

from benchmarks import toy2d, toy2d_trajectory

pytestmark = pytest.mark.usefixtures("one_thread")


def test_last_checkpoint_scores_as_the_final_generator(tmp_path, capsys):
    extra = "--max_train_steps 6 --checkpointing_steps 3"
    toy2d.main(["--seeds", "1", "--methods", "gan", "--extra_args", extra, "--output_dir", str(tmp_path)])
    run_dir = toy2d.run_dir(str(tmp_path), "grid25", "GAN", 1)
    results = toy2d_trajectory.main([run_dir])
    assert sorted(results[run_dir]) == [3, 6]
    with open(f"{run_dir}/metrics.json") as f:
        final = json.load(f)
    assert results[run_dir][6]["modes_covered"] == final["modes_covered"]
    assert results[run_dir][6]["high_quality_percent"] == pytest.approx(final["high_quality_percent"])
    assert results[run_dir][6]["sliced_wasserstein"] == pytest.approx(final["sliced_wasserstein"])
    assert "| step 3 | step 6 |" in capsys.readouterr().out


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json not found"):
        toy2d_trajectory.main([str(tmp_path)])
