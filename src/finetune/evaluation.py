"""Test-set scores of the two checkpoints, and the comparison between them."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from src.finetune.data import NUM_CLASSES, Split
from src.finetune.training import as_dataset

EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class Scores:
    loss: float
    accuracy: float
    predictions: np.ndarray


def score(model: keras.Model, test: Split) -> Scores:
    """Loss, accuracy and predicted classes from a single inference pass over the test set."""
    probabilities = model.predict(as_dataset(test, EVAL_BATCH_SIZE), verbose=0)
    one_hot = keras.utils.to_categorical(test.labels, NUM_CLASSES)
    loss = keras.losses.categorical_crossentropy(one_hot, probabilities)
    predictions = probabilities.argmax(axis=1)
    accuracy = np.mean(predictions == test.labels)
    return Scores(float(np.mean(loss)), float(accuracy), predictions)


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
    baseline: Scores, finetuned: Scores, labels: np.ndarray, class_names: tuple[str, ...]
) -> dict:
    """The content of metrics.json: headline numbers first, then the per-class breakdown."""
    return {
        "baseline_accuracy": baseline.accuracy,
        "finetuned_accuracy": finetuned.accuracy,
        "accuracy_delta": finetuned.accuracy - baseline.accuracy,
        "baseline_loss": baseline.loss,
        "finetuned_loss": finetuned.loss,
        "test_images": len(labels),
        "per_class_accuracy": {
            "baseline": per_class_accuracy(labels, baseline.predictions, class_names),
            "finetuned": per_class_accuracy(labels, finetuned.predictions, class_names),
        },
    }


def confusion_rows(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]
) -> pd.DataFrame:
    """One row per test image, the shape DVC's ``confusion`` plot template reads."""
    names = np.array(class_names)
    return pd.DataFrame({"actual": names[labels], "predicted": names[predictions]})
