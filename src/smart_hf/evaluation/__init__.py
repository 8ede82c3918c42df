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

from smart_hf._lazy import export_lazily

# Imported on first use, so that `smart-hf` reads `options` without importing torch.
_EXPORTS = {
    "DigitsClassifier": "smart_hf.evaluation.digits_classifier",
    "DigitsFeatureExtractor": "smart_hf.evaluation.features",
    "Dinov2FeatureExtractor": "smart_hf.evaluation.features",
    "FeatureExtractor": "smart_hf.evaluation.features",
    "FeatureStatistics": "smart_hf.evaluation.frechet",
    "InceptionFeatureExtractor": "smart_hf.evaluation.features",
    "compute_features": "smart_hf.evaluation.features",
    "compute_statistics": "smart_hf.evaluation.features",
    "density_coverage": "smart_hf.evaluation.precision_recall",
    "frechet_distance": "smart_hf.evaluation.frechet",
    "frechet_distance_from_moments": "smart_hf.evaluation.frechet",
    "load_digits_classifier": "smart_hf.evaluation.digits_classifier",
    "metric_path": "smart_hf.evaluation.metrics",
    "precision_recall": "smart_hf.evaluation.precision_recall",
    "sliced_wasserstein": "smart_hf.toy2d",
    "toy_metrics": "smart_hf.toy2d",
}

__all__ = list(_EXPORTS)

export_lazily(__name__, _EXPORTS)
