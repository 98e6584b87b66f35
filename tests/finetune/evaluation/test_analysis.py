"""Bootstrap intervals, macro-F1, calibration, per-class detail and confused pairs, checked
against cases whose answers are known."""

import numpy as np
import pytest

from src.finetune.evaluation import analysis

NAMES = ("cat", "dog", "fox")


def test_a_paired_interval_is_narrow_when_the_models_agree_and_holds_the_difference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    baseline = np.where(rng.random(400) < 0.7, labels, (labels + 1) % 3)
    finetuned = baseline.copy()
    fixed = np.flatnonzero(baseline != labels)[:40]  # 40 of 400 images put right: +10 points
    finetuned[fixed] = labels[fixed]
    paired = analysis.Bootstrap(labels, {"baseline": baseline, "finetuned": finetuned})
    delta = paired.difference("finetuned", "baseline")
    assert delta.low > 0 and delta.low < 0.10 < delta.high
    assert paired.difference("baseline", "finetuned") == analysis.Interval(-delta.high, -delta.low)
    accuracy = paired.accuracy("finetuned")
    assert accuracy.low < np.mean(finetuned == labels) < accuracy.high
    # Paired: the difference is surer than either accuracy alone.
    assert delta.high - delta.low < accuracy.high - accuracy.low
    again = analysis.Bootstrap(labels, {"finetuned": finetuned, "baseline": baseline})
    assert again.difference("finetuned", "baseline") == delta, "seeded, whatever the order"
    assert again.accuracy("finetuned") == accuracy


def test_identical_models_have_a_zero_width_difference():
    labels = np.array([0, 1, 2, 0, 1])
    predictions = np.array([0, 1, 1, 0, 2])
    paired = analysis.Bootstrap(labels, {"a": predictions, "b": predictions})
    delta = paired.difference("a", "b")
    assert delta.low == delta.high == 0


def test_macro_f1_counts_a_small_class_as_much_as_a_large_one():
    labels = np.array([0] * 98 + [1] * 2)
    always_zero = np.zeros(100, int)
    assert np.mean(always_zero == labels) == 0.98
    assert analysis.macro_f1(labels, always_zero, 2) == pytest.approx((0.98989899 + 0) / 2)


def test_a_perfectly_calibrated_model_has_zero_ece_and_an_overconfident_one_does_not():
    labels = np.array([0, 0, 0, 0, 1])
    # Four right at 0.8 and one wrong at 0.8: accuracy 0.8 in the 0.8 bin.
    calibrated = np.array([[0.8, 0.2]] * 5)
    assert analysis.reliability(calibrated, labels).expected_calibration_error == pytest.approx(0)
    sure = np.array([[1.0, 0.0]] * 5)  # 100% sure, 80% right
    found = analysis.reliability(sure, labels)
    assert found.expected_calibration_error == pytest.approx(0.2)
    assert found.count.sum() == 5 and found.count[-1] == 5


def test_class_report_and_most_confused_pairs():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 0, 1, 1, 1, 1, 0, 2])
    report = analysis.class_report(labels, predictions, NAMES)
    assert report["cat"] == {"precision": pytest.approx(2 / 3), "recall": 0.5,
                             "f1": pytest.approx(4 / 7), "support": 4}  # fmt: skip
    assert report["dog"]["precision"] == 0.5 and report["dog"]["recall"] == 1.0
    pairs = analysis.most_confused(labels, predictions, NAMES)
    assert pairs == [
        {"actual": "cat", "predicted": "dog", "count": 2, "share": 0.5},
        {"actual": "fox", "predicted": "cat", "count": 1, "share": 0.5},
    ]


def test_top_losses_are_the_most_confidently_wrong_first():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.99, 0.01], [0.3, 0.7]])
    assert analysis.top_losses(probabilities, labels, 5).tolist() == [2, 1]
