"""Precision and recall of generated images from k-NN manifolds in a feature space, for `evaluate`."""

import datasets
import evaluate
import numpy as np

from smart_hf.evaluation.options import DEFAULT_K
from smart_hf.evaluation.precision_recall import precision_recall

_DESCRIPTION = """
Improved precision and recall (Kynkäänniemi et al., 2019): each feature set is approximated by the union
of balls around its points, each reaching the point's k-th nearest neighbour. Precision is the fraction of
generated samples inside the real manifold (fidelity), recall the fraction of real samples inside the
generated manifold (diversity). The paper uses k = 3 and 50k samples per set.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: features of the generated images, one vector per image (a (N, D) array).
    references: features of the real images, the same number as `predictions`.
    k: the neighbour that sets each ball's radius (default 3).
Returns:
    precision: fraction of generated samples on the real manifold, in [0, 1].
    recall: fraction of real samples on the generated manifold, in [0, 1].
Examples:
    >>> import evaluate, numpy as np
    >>> from smart_hf.evaluation import metric_path
    >>> pr = evaluate.load(metric_path("precision_recall"))
    >>> rng = np.random.default_rng(0)
    >>> result = pr.compute(predictions=rng.normal(size=(200, 4)), references=rng.normal(size=(200, 4)))
"""

_CITATION = """
@inproceedings{kynkaanniemi2019improved,
  title={Improved Precision and Recall Metric for Assessing Generative Models},
  author={Kynk{\\"a}{\\"a}nniemi, Tuomas and Karras, Tero and Laine, Samuli and Lehtinen, Jaakko
          and Aila, Timo},
  booktitle={Advances in Neural Information Processing Systems},
  year={2019}
}
"""


def _features(inputs: list, name: str) -> np.ndarray:
    try:
        return np.asarray(inputs, dtype=np.float32)
    except ValueError as error:
        raise ValueError(f"Every feature vector in {name} must have the same length.") from error


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrecisionRecall(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/1904.06991"],
        )

    def _compute(self, predictions: list, references: list, k: int = DEFAULT_K) -> dict[str, float]:
        return precision_recall(_features(references, "references"), _features(predictions, "predictions"), k)
