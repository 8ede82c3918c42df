"""Fréchet distance and streaming feature statistics against reference formulas and numpy."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from smart_hf.evaluation import FeatureStatistics, frechet_distance, frechet_distance_from_moments
from smart_hf.evaluation import frechet as frechet_module


def pytorch_fid_reference(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The procedure of pytorch-fid's `calculate_frechet_distance`, restated from its formula (pytorch-fid
    imports torchvision, which cannot live in this environment): sqrtm of the product, eps·I added to both
    covariances when that is not finite, imaginary part dropped."""
    covariance_sqrt = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covariance_sqrt).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covariance_sqrt = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covariance_sqrt = covariance_sqrt.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covariance_sqrt)


def eigenvalue_reference(mu1, sigma1, mu2, sigma2):
    """Independent of sqrtm: Tr((C1·C2)^½) = Σ √λ over the eigenvalues of the symmetric C1^½·C2·C1^½."""
    values, vectors = np.linalg.eigh(sigma1)
    sqrt_sigma1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    trace_sqrt = np.sqrt(np.linalg.eigvalsh(sqrt_sigma1 @ sigma2 @ sqrt_sigma1).clip(min=0)).sum()
    return np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt


@pytest.fixture
def feature_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 16)) @ rng.normal(size=(16, 16))
    fake = 0.8 * rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16)) + 0.5
    return real, fake


def test_matches_reference_formulas(feature_sets):
    real, fake = feature_sets
    moments = [real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)]
    distance = frechet_distance(FeatureStatistics.from_features(real), FeatureStatistics.from_features(fake))
    assert distance == pytest.approx(pytorch_fid_reference(*moments), rel=1e-6)
    assert distance == pytest.approx(eigenvalue_reference(*moments), rel=1e-6)


def test_closed_form_for_isotropic_gaussians():
    """FD(N(0, I), N(m, s²·I)) = |m|² + D·(1 − s)²."""
    dim, shift, scale = 8, np.full(8, 0.5), 2.0
    distance = frechet_distance_from_moments(np.zeros(dim), np.eye(dim), shift, scale**2 * np.eye(dim))
    assert distance == pytest.approx(dim * 0.25 + dim * (1 - scale) ** 2, rel=1e-12)
    assert frechet_distance_from_moments(shift, np.eye(dim), shift, np.eye(dim)) == pytest.approx(
        0, abs=1e-10
    )


def test_streaming_statistics_match_numpy_on_the_full_set():
    """Uneven batches, a mean 1e4 times the spread (where sum-of-squares formulas lose digits), torch."""
    rng = np.random.default_rng(1)
    features = 1e4 + rng.normal(size=(1000, 12)) @ rng.normal(size=(12, 12))
    statistics = FeatureStatistics()
    for batch in np.split(features, [1, 3, 6, 56, 500]):
        statistics.update(torch.from_numpy(batch))
    assert statistics.num_samples == 1000
    np.testing.assert_allclose(statistics.mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(statistics.covariance, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)


def test_statistics_save_and_load(tmp_path, feature_sets):
    real, _ = feature_sets
    statistics = FeatureStatistics.from_features(real, metadata={"feature_space": "test"})
    path = tmp_path / "reference"  # no suffix: written exactly there, not to reference.npz
    statistics.save(path)
    loaded = FeatureStatistics.load(path)
    assert (loaded.num_samples, loaded.metadata) == (600, {"feature_space": "test"})
    np.testing.assert_array_equal(loaded.covariance, statistics.covariance)
    loaded.update(real)  # loaded statistics keep accumulating
    np.testing.assert_allclose(loaded.covariance, np.cov(np.concatenate([real, real]), rowvar=False))


def test_load_pytorch_fid_statistics(tmp_path, feature_sets):
    real, _ = feature_sets
    np.savez(tmp_path / "fid_stats.npz", mu=real.mean(0), sigma=np.cov(real, rowvar=False))
    with pytest.raises(ValueError, match="pass `num_samples`"):
        FeatureStatistics.load(tmp_path / "fid_stats.npz")
    assert FeatureStatistics.load(tmp_path / "fid_stats.npz", num_samples=600).num_samples == 600
    np.savez(tmp_path / "other.npz", features=real)
    with pytest.raises(ValueError, match="not a statistics file"):
        FeatureStatistics.load(tmp_path / "other.npz")


def test_non_finite_square_root_falls_back_to_eps(monkeypatch, feature_sets):
    real, fake = feature_sets
    moments = [real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)]
    sqrtm, calls = scipy.linalg.sqrtm, []

    def first_call_not_finite(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else sqrtm(matrix)

    monkeypatch.setattr(frechet_module.scipy.linalg, "sqrtm", first_call_not_finite)
    with pytest.warns(UserWarning, match="adding 1e-06·I"):
        distance = frechet_distance_from_moments(*moments)
    offset = 1e-6 * np.eye(16)
    np.testing.assert_allclose(calls[1], (moments[1] + offset) @ (moments[3] + offset))
    assert distance == pytest.approx(eigenvalue_reference(*moments), rel=1e-6)


def test_imaginary_part(monkeypatch):
    sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(frechet_module.scipy.linalg, "sqrtm", lambda matrix: sqrtm(matrix) + 1e-9j)
    assert isinstance(frechet_distance_from_moments(np.zeros(3), np.eye(3), np.ones(3), np.eye(3)), float)
    monkeypatch.setattr(frechet_module.scipy.linalg, "sqrtm", lambda matrix: sqrtm(matrix) + 0.1j)
    with pytest.raises(ValueError, match="imaginary component"):
        frechet_distance_from_moments(np.zeros(3), np.eye(3), np.ones(3), np.eye(3))


def test_fewer_samples_than_dimensions_warn():
    rng = np.random.default_rng(2)
    small, large = FeatureStatistics.from_features(rng.normal(size=(10, 16))), FeatureStatistics()
    large.update(rng.normal(size=(100, 16)))
    with pytest.warns(
        UserWarning, match="10 samples of 16-d features give a singular covariance.*at least 17"
    ):
        distance = frechet_distance(small, large)
    assert np.isfinite(distance)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(large, large)


def test_bad_inputs():
    rng = np.random.default_rng(3)
    statistics = FeatureStatistics.from_features(rng.normal(size=(20, 4)))
    with pytest.raises(ValueError, match="dimension 5 cannot be added to statistics of dimension 4"):
        statistics.update(rng.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="different feature extractors"):
        frechet_distance(statistics, FeatureStatistics.from_features(rng.normal(size=(20, 5))))
    with pytest.raises(ValueError, match="NaN or inf"):
        statistics.update(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(num_samples, feature_dim\)"):
        statistics.update(np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(statistics, FeatureStatistics.from_features(np.zeros((1, 4))))
    with pytest.raises(ValueError, match="no samples yet"):
        _ = FeatureStatistics().mean
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance_from_moments(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
