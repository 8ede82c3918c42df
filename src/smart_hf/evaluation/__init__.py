"""Sample-quality metrics: Fréchet distances, precision/recall and the toy 2-D metrics, one API.

    from smart_hf.evaluation import DigitsFeatureExtractor, FeatureStatistics, frechet_distance

    extractor = DigitsFeatureExtractor()  # the shipped 8×8 digits classifier
    real = FeatureStatistics.from_features(extractor.extract(real_images))  # images in [−1, 1]
    fake = FeatureStatistics()
    for batch in batches:  # streaming: one batch of features in memory at a time
        fake.update(extractor.extract(batch))
    fd_digits = frechet_distance(fake, real)

Feature spaces (`features`): the digits classifier (FD_digits), DINOv2 (FD_DINOv2) and Inception-v3 (FID,
needs pytorch-fid). A distance in one space is not comparable with one in another, nor with published FIDs
unless the features are Inception's. `metrics/` holds the same metrics as `evaluate` modules, and
`smart-hf evaluate` runs them from the command line (`runner`).
"""

from smart_hf.evaluation.digits_classifier import DigitsClassifier, load_digits_classifier
from smart_hf.evaluation.features import (
    DigitsFeatureExtractor,
    Dinov2FeatureExtractor,
    FeatureExtractor,
    InceptionFeatureExtractor,
    compute_features,
    compute_statistics,
)
from smart_hf.evaluation.frechet import FeatureStatistics, frechet_distance, frechet_distance_from_moments
from smart_hf.evaluation.metrics import metric_path
from smart_hf.evaluation.precision_recall import precision_recall
from smart_hf.toy2d import sliced_wasserstein, toy_metrics

__all__ = [
    "DigitsClassifier",
    "DigitsFeatureExtractor",
    "Dinov2FeatureExtractor",
    "FeatureExtractor",
    "FeatureStatistics",
    "InceptionFeatureExtractor",
    "compute_features",
    "compute_statistics",
    "frechet_distance",
    "frechet_distance_from_moments",
    "load_digits_classifier",
    "metric_path",
    "precision_recall",
    "sliced_wasserstein",
    "toy_metrics",
]
