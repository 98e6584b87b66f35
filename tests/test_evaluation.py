import numpy as np
import pytest

from src.finetune.evaluation import Scores, comparison_metrics, confusion_rows, per_class_accuracy

NAMES = tuple(f"c{i}" for i in range(10))


def test_per_class_accuracy_and_absent_classes():
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 1, 1, 1])
    result = per_class_accuracy(labels, predictions, NAMES)
    assert result["c0"] == 0.5 and result["c1"] == 1.0 and result["c2"] is None


def test_comparison_metrics_delta_is_finetuned_minus_baseline():
    labels = np.array([0, 1, 2, 3])
    baseline = Scores(loss=1.2, accuracy=0.25, predictions=np.array([0, 0, 0, 0]))
    finetuned = Scores(loss=0.8, accuracy=0.75, predictions=np.array([0, 1, 2, 0]))
    metrics = comparison_metrics(baseline, finetuned, labels, NAMES)
    assert metrics["accuracy_delta"] == pytest.approx(0.5)
    assert metrics["baseline_loss"] == 1.2 and metrics["finetuned_loss"] == 0.8
    assert metrics["per_class_accuracy"]["finetuned"]["c3"] == 0.0
    assert metrics["test_images"] == 4


def test_confusion_rows_name_classes_per_image():
    rows = confusion_rows(np.array([0, 2]), np.array([1, 2]), NAMES)
    assert rows.to_dict("records") == [
        {"actual": "c0", "predicted": "c1"},
        {"actual": "c2", "predicted": "c2"},
    ]
