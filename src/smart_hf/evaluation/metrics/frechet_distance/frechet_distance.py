"""Fréchet distance between two feature sets (FID for Inception-v3 pool3 features), for `evaluate`."""

import datasets
import evaluate
import numpy as np

from smart_hf.evaluation.frechet import FeatureStatistics, frechet_distance

_DESCRIPTION = """
The Fréchet distance between Gaussians fitted to two feature sets, ||mu1 − mu2||² + Tr(C1 + C2 −
2·(C1·C2)^½) (Heusel et al., 2017), computed in float64 like the FID reference code (1e-6·I added when the
matrix square root is not finite). It is FID only for Inception-v3 pool3 features of 10k+ images; in any
other feature space (e.g. smart_hf's digits classifier or DINOv2) name it after the space (FD_digits,
FD_DINOv2).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: features of the generated images, one vector per image (a (N, D) array); or a list holding
        one path to an .npz of their statistics (written by smart_hf's `FeatureStatistics.save`).
    references: features of the real images, the same number as `predictions` (an `evaluate` rule; for sets
        of different sizes, or 50k images, save statistics with `FeatureStatistics` and pass the .npz paths).
    eps: the multiple of the identity added to both covariances when the square root is not finite.
Returns:
    frechet_distance: the distance (0 for identical distributions).
Examples:
    >>> import evaluate, numpy as np
    >>> from smart_hf.evaluation import metric_path
    >>> fd = evaluate.load(metric_path("frechet_distance"))
    >>> rng = np.random.default_rng(0)
    >>> result = fd.compute(predictions=rng.normal(size=(500, 4)), references=rng.normal(size=(500, 4)))
"""

_CITATION = """
@inproceedings{heusel2017gans,
  title={GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium},
  author={Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard
          and Hochreiter, Sepp},
  booktitle={Advances in Neural Information Processing Systems},
  year={2017}
}
"""


def _statistics(inputs: list, name: str) -> FeatureStatistics:
    if isinstance(inputs[0], str):
        if len(inputs) != 1:
            raise ValueError(f"Pass one statistics file as {name}, got {len(inputs)}.")
        return FeatureStatistics.load(inputs[0])
    try:
        features = np.asarray(inputs, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"Every feature vector in {name} must have the same length.") from error
    return FeatureStatistics.from_features(features)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FrechetDistance(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Sequence(datasets.Value("float64")),
                    }
                ),
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
            ],
            reference_urls=["https://arxiv.org/abs/1706.08500"],
        )

    def _compute(self, predictions: list, references: list, eps: float = 1e-6) -> dict[str, float]:
        generated, real = _statistics(predictions, "predictions"), _statistics(references, "references")
        return {"frechet_distance": frechet_distance(generated, real, eps)}
