"""benchmarks.train_cost on tiny settings: every SMaRt variant timed against the plain GAN in this process."""

import pytest

from benchmarks import train_cost
from tests.helpers import save_tiny_score

TINY = "--g_base_channels 8 --d_base_channels 8 --latent_dim 8 --train_batch_size 4"


@pytest.mark.usefixtures("one_thread")
def test_every_variant_is_timed_against_the_plain_gan(tmp_path, capsys):
    extra = f"{TINY} --score {save_tiny_score(tmp_path / 'score')}"
    timings = train_cost.main(["--steps", "8", "--rounds", "1", "--extra_args", extra])
    assert list(timings) == list(train_cost.VARIANTS)
    assert all(len(seconds) == 1 and seconds[0] > 0 for seconds in timings.values())
    output = capsys.readouterr().out
    header = "| variant | s / iteration (median) | × plain GAN (median) | × plain GAN per round |"
    assert f"{header}\n|---|---|---|---|\n" in output
    assert f"| plain GAN | {timings['plain GAN'][0]:.4f} | 1.00 | 1.00 |" in output
    assert (
        "1 rounds of 8 steps" in output and "Target: SMaRt full, interval 8 ≤ 1.25× the plain GAN: " in output
    )
