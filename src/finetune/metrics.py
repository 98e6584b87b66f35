"""The numbers ``evaluate`` writes to metrics.json, and reading them back.

TensorFlow-free: the report stage and the relog tool read metrics without loading a model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.finetune.errors import PipelineError

# The comparison, in metrics.json, the evaluate run and the execution's comparison run; with
# test-time augmentation each also comes with ``_tta``.
HEADLINE = (
    "baseline_accuracy",
    "finetuned_accuracy",
    "accuracy_delta",
    "baseline_loss",
    "finetuned_loss",
)
TTA_SUFFIX = "_tta"
TTA_HEADLINE = tuple(f"{key}{TTA_SUFFIX}" for key in HEADLINE[:3])


@dataclass(frozen=True)
class Scores:
    loss: float
    accuracy: float
    predictions: np.ndarray


def per_class_accuracy(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, float | None]:
    """Accuracy within each true class; None for a class absent from the test set."""
    return {
        name: float(np.mean(predictions[labels == index] == index))
        if np.any(labels == index)
        else None
        for index, name in enumerate(class_names)
    }


def comparison_metrics(
    baseline: Scores,
    finetuned: Scores,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    tta: tuple[Scores, Scores] | None = None,
) -> dict[str, Any]:
    """The content of metrics.json: the headline numbers and how many test images made them."""
    metrics: dict[str, Any] = {
        "baseline_accuracy": baseline.accuracy,
        "finetuned_accuracy": finetuned.accuracy,
        "accuracy_delta": finetuned.accuracy - baseline.accuracy,
        "baseline_loss": baseline.loss,
        "finetuned_loss": finetuned.loss,
    }
    if tta is not None:
        metrics |= {
            "baseline_accuracy_tta": tta[0].accuracy,
            "finetuned_accuracy_tta": tta[1].accuracy,
            "accuracy_delta_tta": tta[1].accuracy - tta[0].accuracy,
        }
    return metrics | {"test_images": len(labels)}


def per_class_metrics(
    baseline: Scores, finetuned: Scores, labels: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, dict[str, float | None]]:
    """The content of per_class.json: each checkpoint's accuracy within each class, by name.

    Kept out of metrics.json: ten classes (or a hundred) times two checkpoints would make
    `dvc metrics show` and `dvc exp show` tables too wide to read.
    """
    return {
        "baseline": per_class_accuracy(labels, baseline.predictions, class_names),
        "finetuned": per_class_accuracy(labels, finetuned.predictions, class_names),
    }


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers a metrics.json holds, TTA ones included when it has them."""
    return {key: float(metrics[key]) for key in (*HEADLINE, *TTA_HEADLINE) if key in metrics}


def confusion_rows(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]
) -> pd.DataFrame:
    """One row per test image, the shape DVC's ``confusion`` plot template reads."""
    names = np.array(class_names)
    return pd.DataFrame({"actual": names[labels], "predicted": names[predictions]})


def read_per_class(path: Path) -> dict[str, dict[str, float | None]]:
    """per_class.json as ``evaluate`` writes it, or one line saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro evaluate` first")
    try:
        per_class = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(
            f"{path} is not valid JSON ({error}); run `dvc repro evaluate`"
        ) from None
    if not isinstance(per_class, dict) or not all(
        isinstance(per_class.get(key), dict) for key in ("baseline", "finetuned")
    ):
        raise PipelineError(
            f"{path} lacks the baseline and fine-tuned accuracies; run `dvc repro --force evaluate`"
        )
    return per_class


def read_metrics(path: Path) -> dict[str, Any]:
    """metrics.json as ``evaluate`` writes it, or one line saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro evaluate` first")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(
            f"{path} is not valid JSON ({error}); run `dvc repro evaluate`"
        ) from None
    missing = [
        key
        for key in (*HEADLINE, "test_images")
        if not isinstance(metrics, dict) or key not in metrics
    ]
    numbers = [metrics.get(key) for key in HEADLINE] if not missing else []
    if missing or not all(_is_number(value) for value in numbers):
        problem = f"lacks {', '.join(missing)}" if missing else "holds a headline that is no number"
        raise PipelineError(f"{path} {problem}; run `dvc repro --force evaluate` to rewrite it")
    return metrics


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
