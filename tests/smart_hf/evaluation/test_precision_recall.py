"""k-NN precision and recall (Kynkäänniemi et al., 2019), and the toy 2-D metrics under the evaluation API."""

import numpy as np
import pytest
import torch

import smart_hf.toy2d
from smart_hf import evaluation
from smart_hf.evaluation import precision_recall
from smart_hf.evaluation.precision_recall import density_coverage, knn_radii


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The paper's definition on full distance matrices."""

    def radii(points):
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself

    cross = np.linalg.norm(fake[:, None] - real[None], axis=-1)  # (fake, real)
    return {
        "precision": float((cross <= radii(real)[None, :]).any(axis=1).mean()),
        "recall": float((cross.T <= radii(fake)[None, :]).any(axis=1).mean()),
    }


def test_matches_the_definition_in_blocks():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(70, 5)), rng.normal(size=(50, 5)) * 1.5 + 0.3
    for k in (1, 3, 5):
        assert precision_recall(real, fake, k=k, batch_size=7) == brute_force(real, fake, k)


def test_fidelity_and_coverage():
    rng = np.random.default_rng(1)
    two_modes = np.concatenate([rng.normal(size=(200, 2)) - 10, rng.normal(size=(200, 2)) + 10])
    one_mode = rng.normal(size=(400, 2)) - 10  # mode collapse: good samples, half the data covered
    far_away = rng.normal(size=(400, 2)) + 100
    assert precision_recall(two_modes, two_modes) == {"precision": 1.0, "recall": 1.0}
    collapsed = precision_recall(two_modes, one_mode)
    assert collapsed["precision"] > 0.95 and 0.45 < collapsed["recall"] < 0.55
    assert precision_recall(two_modes, far_away) == {"precision": 0.0, "recall": 0.0}


def test_knn_radii_exclude_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    torch.testing.assert_close(knn_radii(points, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    torch.testing.assert_close(knn_radii(points, k=2, batch_size=3), torch.tensor([3.0, 2.0, 3.0, 6.0]))


@pytest.mark.parametrize("batch_size", [1, 2, 1024])
def test_density_and_coverage_by_hand(batch_size):
    """Real 0, 1, 3, 7 (k = 1 radii 1, 1, 2, 4; k = 2 radii 3, 2, 3, 6), generated 0.5, 2.5, 100.

    k = 1: 0.5 lies in the balls of 0 and 1, 2.5 in that of 3, 100 in none: density 3 / (1·3), and the ball
    of 7 is empty: coverage 3/4. k = 2: 0.5 lies in 3 balls (not 7's), 2.5 in all 4: density 7 / (2·3).
    """
    real, fake = torch.tensor([[0.0], [1.0], [3.0], [7.0]]), torch.tensor([[0.5], [2.5], [100.0]])
    one = density_coverage(real, fake, k=1, batch_size=batch_size)
    assert one["density"] == pytest.approx(1.0) and one["coverage"] == pytest.approx(0.75)
    two = density_coverage(real, fake, k=2, batch_size=batch_size)
    assert two["density"] == pytest.approx(7 / 6) and two["coverage"] == pytest.approx(1.0)


def test_collapse_keeps_density_and_halves_coverage():
    rng = np.random.default_rng(3)

    def two_modes():
        return np.concatenate([rng.normal(size=(200, 2)) - 10, rng.normal(size=(200, 2)) + 10])

    real = two_modes()
    matched, one_mode = (
        density_coverage(real, two_modes()),
        density_coverage(real, rng.normal(size=(400, 2)) - 10),
    )
    assert 0.7 < matched["density"] < 1.3 and matched["coverage"] > 0.75
    assert 0.7 < one_mode["density"] < 1.3 and one_mode["coverage"] < 0.5  # fine samples, half the data
    assert density_coverage(real, rng.normal(size=(10, 2)) + 100) == {"density": 0.0, "coverage": 0.0}


def test_bad_inputs():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="dimensions 4 and 3"):
        precision_recall(rng.normal(size=(10, 4)), rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\] for 3 points"):
        precision_recall(rng.normal(size=(10, 4)), rng.normal(size=(3, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        precision_recall(np.full((10, 4), np.nan), rng.normal(size=(10, 4)))
    with pytest.raises(ValueError, match=r"\(num_samples, feature_dim\)"):
        precision_recall(rng.normal(size=10), rng.normal(size=(10, 4)))


def test_toy_metrics_are_part_of_the_evaluation_api():
    assert evaluation.toy_metrics is smart_hf.toy2d.toy_metrics
    assert evaluation.sliced_wasserstein is smart_hf.toy2d.sliced_wasserstein
