"""How sure the test numbers are and where a model is wrong: bootstrap intervals, macro-F1,
calibration, per-class precision and recall, the most confused pairs.

Numbers only (NumPy and scikit-learn), so the report can recompute nothing and read them back.
scikit-learn is imported where it is used: every stage imports this module (through the
metrics the trackers log), and only `evaluate` computes these numbers; importing it takes
about 1.5 s, which `prepare` and `report` need not pay on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000  # bootstrap resamples of the test split; the interval moves by ~0.1 point
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0  # fixed: the same test predictions always give the same interval
CALIBRATION_BINS = 15  # as Guo et al. (2017) and most libraries report ECE


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


class Bootstrap:
    """Accuracies of several models on the same resamples of the test images (paired), so the
    interval of a difference reflects only where two models disagree."""

    def __init__(self, labels: np.ndarray, predictions: Mapping[str, np.ndarray]) -> None:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        draws = rng.integers(0, len(labels), size=(RESAMPLES, len(labels)))
        self._accuracies = {
            name: (predicted == labels).astype(np.float32)[draws].mean(axis=1)
            for name, predicted in predictions.items()
        }

    def accuracy(self, model: str) -> Interval:
        """The 95% interval of one model's accuracy."""
        return _percentiles(self._accuracies[model])

    def difference(self, model: str, other: str) -> Interval:
        """The 95% interval of ``model``'s accuracy minus ``other``'s."""
        return _percentiles(self._accuracies[model] - self._accuracies[other])


def _percentiles(values: np.ndarray) -> Interval:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(round(float(low), 6), round(float(high), 6))


def macro_f1(labels: np.ndarray, predictions: np.ndarray, classes: int) -> float:
    """The unweighted mean of the classes' F1: a small class counts as much as a large one."""
    from sklearn.metrics import f1_score  # here, not above: see the module's docstring

    present = np.unique(labels)  # a class absent from the test split has no F1 to average
    return float(f1_score(labels, predictions, labels=present, average="macro", zero_division=0))


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: the mean confidence, the accuracy and the number of images."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def expected_calibration_error(self) -> float:
        """Mean |accuracy - confidence| over the bins, weighted by their images."""
        total = self.count.sum()
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(gaps * self.count[filled]) / total) if total else 0.0


def reliability(probabilities: np.ndarray, labels: np.ndarray) -> Reliability:
    """The reliability diagram's bins: images binned by their top probability."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, CALIBRATION_BINS - 1)
    count = np.bincount(bins, minlength=CALIBRATION_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, confidence, CALIBRATION_BINS) / count
        accuracy = np.bincount(bins, right.astype(float), CALIBRATION_BINS) / count
    return Reliability(np.nan_to_num(mean_confidence), np.nan_to_num(accuracy), count)


def class_report(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, dict[str, float | int]]:
    """Per class: precision, recall, F1 and support (test images of the class)."""
    from sklearn.metrics import precision_recall_fscore_support  # see the module's docstring

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=range(len(class_names)), zero_division=0
    )
    return {
        name: {
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }


def most_confused(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...], top: int = 10
) -> list[dict[str, str | int | float]]:
    """The pairs (actual, predicted) the model mixes up most, with the count and its share
    of the actual class's test images; largest first, at most ``top``."""
    from sklearn.metrics import confusion_matrix  # see the module's docstring

    matrix = confusion_matrix(labels, predictions, labels=range(len(class_names)))
    np.fill_diagonal(matrix, 0)
    totals = np.bincount(labels, minlength=len(class_names))
    order = np.argsort(-matrix, axis=None, kind="stable")[:top]
    pairs = []
    for actual, predicted in zip(*np.unravel_index(order, matrix.shape), strict=True):
        count = int(matrix[actual, predicted])
        if count == 0:
            break
        pairs.append(
            {
                "actual": class_names[actual],
                "predicted": class_names[predicted],
                "count": count,
                "share": round(count / int(totals[actual]), 6),
            }
        )
    return pairs


def top_losses(probabilities: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of the most confidently wrong test images: the highest loss first."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    loss = -np.log(np.clip(probabilities[wrong, labels[wrong]], 1e-12, 1))
    return wrong[np.argsort(-loss, kind="stable")[:count]]
