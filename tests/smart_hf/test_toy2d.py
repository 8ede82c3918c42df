import pytest
import torch

from smart_hf.toy2d import load_toy_dataset, sliced_wasserstein, toy_metrics


def test_true_grid25_data_is_the_limit():
    dataset = load_toy_dataset("grid25")
    metrics = toy_metrics(dataset.sample(2500, generator=torch.Generator().manual_seed(0)), dataset)
    assert metrics["modes_covered"] == 25
    assert metrics["high_quality_percent"] == pytest.approx(98.9, abs=0.6)
    assert metrics["sliced_wasserstein"] < 0.2  # finite-sample floor: per-mode counts differ


def test_collapsed_samples_cover_one_mode_and_are_far_in_distance():
    dataset = load_toy_dataset("grid25")
    metrics = toy_metrics(torch.zeros(2500, 2), dataset)
    assert metrics["modes_covered"] == 1 and metrics["high_quality_percent"] == 100.0
    assert metrics["sliced_wasserstein"] > 1.0


def test_ring8_geometry():
    dataset = load_toy_dataset("ring8")
    assert dataset.means.shape == (8, 2)
    torch.testing.assert_close(dataset.means.norm(dim=1), torch.full((8,), 2.0))


def test_bad_inputs():
    with pytest.raises(ValueError, match="Unknown toy data set 'moons'"):
        load_toy_dataset("moons")
    with pytest.raises(ValueError, match="NaN"):
        toy_metrics(torch.full((10, 2), float("nan")), load_toy_dataset("grid25"))
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(4, 2))
