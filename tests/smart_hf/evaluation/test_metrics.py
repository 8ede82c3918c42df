"""The `evaluate` metric modules, loaded offline from their local folders."""

from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from smart_hf.evaluation import FeatureStatistics, frechet_distance, metric_path, precision_recall

evaluate = pytest.importorskip("evaluate")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: what `evaluate.load` of a local path must cope with."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(120, 6)), rng.normal(size=(120, 6)) * 1.3 + 0.2


def test_frechet_distance_from_features(tmp_path, features):
    generated, real = features
    expected = frechet_distance(
        FeatureStatistics.from_features(generated), FeatureStatistics.from_features(real)
    )
    for path in (
        metric_path("frechet_distance"),
        str(Path(metric_path("frechet_distance")) / "frechet_distance.py"),
    ):
        metric = evaluate.load(path, cache_dir=str(tmp_path))
        result = metric.compute(predictions=generated, references=real)
        assert result["frechet_distance"] == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_from_statistics_files(tmp_path, features):
    """Precomputed statistics, here of sets of different sizes."""
    generated, real = features
    FeatureStatistics.from_features(generated[:80]).save(tmp_path / "generated.npz")
    FeatureStatistics.from_features(real).save(tmp_path / "real.npz")
    metric = evaluate.load(metric_path("frechet_distance"), cache_dir=str(tmp_path))
    result = metric.compute(
        predictions=[str(tmp_path / "generated.npz")], references=[str(tmp_path / "real.npz")]
    )
    expected = frechet_distance(
        FeatureStatistics.from_features(generated[:80]), FeatureStatistics.from_features(real)
    )
    assert result["frechet_distance"] == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_bad_inputs(tmp_path, features):
    generated, real = features
    metric = evaluate.load(metric_path("frechet_distance"), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Mismatch in the number of predictions"):
        metric.compute(predictions=generated[:10], references=real)
    with pytest.raises(ValueError, match="different feature extractors"):
        metric.compute(predictions=generated[:, :5], references=real)
    with pytest.raises(ValueError, match="must have the same length"):
        metric.compute(predictions=[[1.0, 2.0], [3.0]], references=[[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="one statistics file"):
        metric.compute(predictions=["a.npz", "b.npz"], references=["c.npz", "d.npz"])
    with pytest.warns(UserWarning, match="singular covariance"):
        metric.compute(predictions=generated[:5], references=real[:5])


def test_precision_recall(tmp_path, features):
    generated, real = features
    metric = evaluate.load(metric_path("precision_recall"), cache_dir=str(tmp_path))
    result = metric.compute(predictions=generated, references=real, k=5)
    expected = precision_recall(real.astype(np.float32), generated.astype(np.float32), k=5)
    assert result == pytest.approx(expected)
    assert 0 < result["precision"] < 1 and 0 < result["recall"] < 1


def test_unknown_metric():
    with pytest.raises(ValueError, match="frechet_distance"):
        metric_path("fid")
