import pytest
import torch

from smart_hf.toy2d import TOY_DATASETS, ToyDataset, load_toy_dataset, sliced_wasserstein, toy_metrics


def test_true_grid25_data_is_the_limit():
    dataset = load_toy_dataset("grid25")
    metrics = toy_metrics(dataset.sample(2500, generator=torch.Generator().manual_seed(0)), dataset)
    assert metrics["modes_covered"] == 25
    assert metrics["high_quality_percent"] == pytest.approx(98.9, abs=0.6)
    assert metrics["sliced_wasserstein"] < 0.2  # finite-sample floor: per-mode counts differ


def test_true_weighted_data_gives_every_mode_its_share():
    dataset = load_toy_dataset("grid9_weighted")
    metrics = toy_metrics(dataset.sample(2500, generator=torch.Generator().manual_seed(0)), dataset)
    assert metrics["modes_covered_quarter"] == 9
    assert metrics["mass_tv_percent"] < 3  # finite-sample noise only
    assert metrics["lightest_mode_ratio"] == pytest.approx(1.0, abs=0.3)


def test_collapsed_samples_cover_one_mode_and_are_far_in_distance():
    dataset = load_toy_dataset("grid25")
    metrics = toy_metrics(torch.zeros(2500, 2), dataset)
    assert metrics["modes_covered"] == 1 and metrics["high_quality_percent"] == 100.0
    assert metrics["sliced_wasserstein"] > 1.0


def test_per_mode_metrics_of_points_placed_on_known_modes():
    """100 points: 2, 20, 30 and 38 on the modes of weights 0.1, 0.2, 0.3, 0.4, and 10 far from all."""
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    dataset = ToyDataset("four", means, 0.1, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    counts = torch.tensor([2, 20, 30, 38])
    samples = torch.cat([means.repeat_interleave(counts, dim=0), torch.full((10, 2), 5.0)])
    metrics = toy_metrics(samples, dataset)
    assert metrics["high_quality_percent"] == pytest.approx(90.0)
    assert metrics["mode_counts"] == [2, 20, 30, 38]
    assert metrics["modes_covered"] == 4
    assert metrics["modes_covered_quarter"] == 3  # the light mode needs 0.25 · 0.1 · 100 = 2.5 samples
    # shares of the 90 HQ samples vs the weights: ½(7/90 + 2/90 + 3/90 + 2/90) = 7/90
    assert metrics["mass_tv_percent"] == pytest.approx(100 * 7 / 90)
    assert metrics["lightest_mode_ratio"] == pytest.approx((2 / 90) / 0.1)


def test_exact_shares_have_no_mass_error_and_equal_weights_report_the_worst_mode():
    dataset = load_toy_dataset("grid25")
    on_modes = dataset.means.repeat(4, 1)
    metrics = toy_metrics(on_modes, dataset)
    assert metrics["mass_tv_percent"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["lightest_mode_ratio"] == pytest.approx(1.0)
    assert metrics["modes_covered_quarter"] == 25
    one_starved = torch.cat([dataset.means[1:].repeat(8, 1), dataset.means[:1]])  # mode 0: 1 of 193
    metrics = toy_metrics(one_starved, dataset)
    assert metrics["lightest_mode_ratio"] == pytest.approx((1 / 193) / (1 / 25))
    assert metrics["modes_covered"] == 25
    assert metrics["modes_covered_quarter"] == 24  # mode 0 needs 0.25 · 193 / 25 = 1.93 samples
    assert metrics["mass_tv_percent"] == pytest.approx(100 * (1 / 25 - 1 / 193))  # only mode 0 is short


def test_no_high_quality_sample_is_the_largest_mass_error():
    metrics = toy_metrics(torch.full((10, 2), 1.0), load_toy_dataset("grid25"))
    assert metrics["high_quality_percent"] == 0 and metrics["modes_covered_quarter"] == 0
    assert metrics["mass_tv_percent"] == 100 and metrics["lightest_mode_ratio"] == 0


def test_ring8_geometry():
    dataset = load_toy_dataset("ring8")
    assert dataset.means.shape == (8, 2)
    torch.testing.assert_close(dataset.means.norm(dim=1), torch.full((8,), 2.0))


def test_weighted_sample_draws_components_by_weight():
    dataset = ToyDataset("two", torch.tensor([[-5.0, 0.0], [5.0, 0.0]]), 0.1, torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(dataset.weights, torch.tensor([0.25, 0.75]))
    samples = dataset.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert (samples[:, 0] > 0).float().mean().item() == pytest.approx(0.75, abs=0.01)


def test_equal_weight_sets_draw_as_before_weights_existed():
    """grid25's samples are the ones its recorded results were measured on (uniform randint draws)."""
    dataset = load_toy_dataset("grid25")
    generator = torch.Generator().manual_seed(5)
    components = torch.randint(0, 25, (100,), generator=generator)
    expected = dataset.means[components] + 0.05 * torch.randn(100, 2, generator=generator)
    torch.testing.assert_close(dataset.sample(100, generator=torch.Generator().manual_seed(5)), expected)


def test_analytic_score_carries_the_weights():
    dataset = load_toy_dataset("grid9_weighted")
    torch.testing.assert_close(dataset.analytic_score().log_weights.exp(), dataset.weights)


@pytest.mark.parametrize(
    "name, num_modes, lightest_over_heaviest, spread, std",
    [
        ("grid9_weighted", 9, 0.1, 2.0, 0.05),
        ("two_rings", 24, 1.0, 4.0, 0.05),
        ("grid25_wide", 25, 1.0, 6.0, 0.15),
        ("grid49", 49, 1.0, 4.5, 0.05),
    ],
)
def test_family_geometry(name, num_modes, lightest_over_heaviest, spread, std):
    dataset = load_toy_dataset(name)
    assert name in TOY_DATASETS and dataset.name == name
    assert dataset.means.shape == (num_modes, 2) and dataset.std == std
    assert dataset.means.abs().max().item() == pytest.approx(spread)
    assert dataset.weights.sum().item() == pytest.approx(1.0)
    assert (dataset.weights.min() / dataset.weights.max()).item() == pytest.approx(lightest_over_heaviest)
    assert torch.pdist(dataset.means).min().item() >= 20 * std  # the 3-std high-quality discs are far apart


def test_two_rings_radii():
    radii = load_toy_dataset("two_rings").means.norm(dim=1)
    torch.testing.assert_close(radii, torch.tensor([2.0] * 8 + [4.0] * 16))


def test_bad_inputs():
    with pytest.raises(ValueError, match="Unknown toy data set 'moons'"):
        load_toy_dataset("moons")
    with pytest.raises(ValueError, match="NaN"):
        toy_metrics(torch.full((10, 2), float("nan")), load_toy_dataset("grid25"))
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="2 positive numbers"):
        ToyDataset("bad", torch.zeros(2, 2), 0.1, torch.tensor([1.0, 0.0]))
