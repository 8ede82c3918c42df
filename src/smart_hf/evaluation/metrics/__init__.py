"""`evaluate` metric modules, one folder each (a Hub metric Space's layout: `<name>/<name>.py` + README.md).

    import evaluate
    from smart_hf.evaluation import metric_path

    fd = evaluate.load(metric_path("frechet_distance"))
    fd.compute(predictions=generated_features, references=real_features)
    fd.compute(predictions=["generated.npz"], references=["reference.npz"])  # FeatureStatistics files

The modules import smart_hf, so they load wherever smart_hf is installed, offline included.
"""

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("frechet_distance", "precision_recall")


def metric_path(name: str) -> str:
    """The folder of the metric `name`, for `evaluate.load`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; choose one of {list(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)
