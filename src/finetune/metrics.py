"""The numbers ``evaluate`` writes to metrics.json, and reading them back.

TensorFlow-free: the report stage and the relog tool read metrics without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from src.finetune.data import is_class_name
from src.finetune.files import read_json

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


Accuracy = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Delta = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
Loss = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Metrics(BaseModel):
    """metrics.json as ``evaluate`` writes it (``comparison_metrics``)."""

    model_config = ConfigDict(extra="forbid")

    baseline_accuracy: Accuracy
    finetuned_accuracy: Accuracy
    accuracy_delta: Delta
    baseline_loss: Loss
    finetuned_loss: Loss
    baseline_accuracy_tta: Accuracy | None = None
    finetuned_accuracy_tta: Accuracy | None = None
    accuracy_delta_tta: Delta | None = None
    test_images: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _tta_whole(self) -> Metrics:
        given = [getattr(self, key) is not None for key in TTA_HEADLINE]
        if any(given) and not all(given):
            raise ValueError(f"it has some of {', '.join(TTA_HEADLINE)} but not all")
        return self


class PerClass(BaseModel):
    """per_class.json as ``evaluate`` writes it (``per_class_metrics``)."""

    model_config = ConfigDict(extra="forbid")

    baseline: dict[str, Accuracy | None]
    finetuned: dict[str, Accuracy | None]

    @model_validator(mode="after")
    def _same_classes(self) -> PerClass:
        if list(self.baseline) != list(self.finetuned):
            raise ValueError("baseline and finetuned name different classes")
        for name in self.baseline:
            if not is_class_name(name):
                raise ValueError(f"class name {name[:100]!r} is not printable UTF-8 text")
        return self


def read_per_class(path: Path) -> dict[str, dict[str, float | None]]:
    """per_class.json as ``evaluate`` writes it, or one line saying what is wrong with it."""
    return read_json(path, PerClass, "run `dvc repro --force evaluate` to rewrite it")


def read_metrics(path: Path) -> dict[str, Any]:
    """metrics.json as ``evaluate`` writes it, or one line saying what is wrong with it."""
    return read_json(path, Metrics, "run `dvc repro --force evaluate` to rewrite it")
