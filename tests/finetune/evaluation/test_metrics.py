import json

import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.evaluation.metrics import (
    CLASSICAL_KEYS,
    HEADLINE,
    TTA_HEADLINE,
    ClassicalScores,
    Metrics,
    PerClass,
    Scores,
    confusion_rows,
    per_class_accuracy,
    read_metrics,
    read_per_class,
)

NAMES = tuple(f"c{i}" for i in range(10))
VAL = (0.7, None)  # the fine-tuned model's validation accuracy, without TTA
LABELS = np.array([0, 1, 2, 3])


def confident(predictions, sure=0.91):
    """Probabilities putting ``sure`` on each predicted class, the rest spread evenly."""
    rows = np.full((len(predictions), 10), (1 - sure) / 9)
    rows[np.arange(len(predictions)), predictions] = sure
    return rows


BASELINE = Scores(loss=1.2, accuracy=0.25, probabilities=confident([0, 0, 0, 0]))
FINETUNED = Scores(loss=0.8, accuracy=0.75, probabilities=confident([0, 1, 2, 0]))


def test_per_class_accuracy_and_absent_classes():
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 1, 1, 1])
    result = per_class_accuracy(labels, predictions, NAMES)
    assert result["c0"] == 0.5 and result["c1"] == 1.0 and result["c2"] is None


def test_comparison_metrics_delta_is_finetuned_minus_baseline():
    metrics = Metrics.compare(BASELINE, FINETUNED, LABELS, val=VAL)
    assert metrics.accuracy_delta == pytest.approx(0.5)
    assert metrics.baseline_loss == 1.2 and metrics.finetuned_loss == 0.8
    assert metrics.test_images == 4
    per_class = PerClass.compare(BASELINE, FINETUNED, LABELS, NAMES)
    assert per_class.finetuned["c3"] == 0.0 and per_class.baseline["c0"] == 1.0
    assert not any(key.endswith("_tta") for key in metrics.headline())
    assert not metrics.tta


def test_tta_adds_its_accuracies_and_delta_beside_the_plain_ones():
    tta = (Scores(1.0, 0.5, confident([0, 1, 0, 0])), Scores(0.7, 1.0, confident(LABELS)))
    metrics = Metrics.compare(BASELINE, FINETUNED, LABELS, tta, val=(0.7, 0.75))
    assert metrics.baseline_accuracy_tta == 0.5 and metrics.finetuned_accuracy_tta == 1.0
    assert metrics.accuracy_delta_tta == pytest.approx(0.5)
    assert set(HEADLINE) | set(TTA_HEADLINE) == set(metrics.headline())
    assert set(metrics.headline()) == {
        "baseline_accuracy",
        "finetuned_accuracy",
        "accuracy_delta",
        "baseline_loss",
        "finetuned_loss",
        "baseline_accuracy_ci_low",
        "baseline_accuracy_ci_high",
        "finetuned_accuracy_ci_low",
        "finetuned_accuracy_ci_high",
        "accuracy_delta_ci_low",
        "accuracy_delta_ci_high",
        "baseline_macro_f1",
        "finetuned_macro_f1",
        "baseline_ece",
        "finetuned_ece",
        "finetuned_val_accuracy",
        "baseline_accuracy_tta",
        "finetuned_accuracy_tta",
        "accuracy_delta_tta",
        "finetuned_val_accuracy_tta",
    }


def test_the_classical_reference_is_scored_on_the_same_images_with_the_gain_over_it():
    labels = np.arange(40) % 4
    finetuned = Scores(0.3, 1.0, confident(labels))
    wrong_quarter = np.where(np.arange(40) < 10, (labels + 1) % 4, labels)
    classical = ClassicalScores(wrong_quarter, train_images=321)
    metrics = Metrics.compare(BASELINE_40, finetuned, labels, classical=classical, val=VAL)
    assert metrics.classical_accuracy == 0.75 and metrics.gain_over_classical == 0.25
    assert metrics.classical_train_images == 321
    assert metrics.gain_over_classical_ci_low > 0 and metrics.beats_classical
    low, high = metrics.classical_accuracy_ci_low, metrics.classical_accuracy_ci_high
    assert low < 0.75 < high
    headline = list(metrics.headline())
    assert headline[0] == "finetuned_accuracy" and "classical_train_images" not in headline
    assert set(CLASSICAL_KEYS) - set(headline) == {"classical_train_images"}
    # the same resamples as the checkpoints': adding the reference moves none of theirs
    alone = Metrics.compare(BASELINE_40, finetuned, labels, val=VAL)
    assert alone.accuracy_delta_ci_low == metrics.accuracy_delta_ci_low
    assert not alone.classical and not alone.beats_classical


def test_a_model_no_better_than_the_classical_reference_does_not_beat_it():
    labels = np.arange(40) % 4
    same = Scores(0.3, 1.0, confident(labels))
    metrics = Metrics.compare(
        BASELINE_40, same, labels, classical=ClassicalScores(labels, 40), val=VAL
    )
    assert metrics.gain_over_classical == 0 and not metrics.beats_classical


def test_metrics_json_with_part_of_the_classical_reference_is_refused(tmp_path):
    labels = np.arange(40) % 4
    classical = ClassicalScores(labels, 40)
    metrics = Metrics.compare(BASELINE_40, BASELINE_40, labels, classical=classical, val=VAL)
    values = metrics.model_dump(exclude_none=True)
    del values["gain_over_classical_ci_high"]
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(values))
    with pytest.raises(PipelineError, match="gain_over_classical_ci_high"):
        read_metrics(path)


BASELINE_40 = Scores(1.0, 0.25, confident(np.zeros(40, int)))


def test_confusion_rows_name_classes_per_image():
    rows = confusion_rows(np.array([0, 2]), np.array([1, 2]), NAMES)
    assert rows.to_dict("records") == [
        {"actual": "c0", "predicted": "c1"},
        {"actual": "c2", "predicted": "c2"},
    ]


def test_metrics_are_read_back_and_checked(tmp_path):
    path = tmp_path / "metrics.json"
    metrics = Metrics.compare(BASELINE, FINETUNED, LABELS, val=VAL).model_dump(exclude_none=True)
    path.write_text(json.dumps(metrics))
    assert read_metrics(path).model_dump(exclude_none=True) == metrics
    path.write_text(json.dumps({k: v for k, v in metrics.items() if k != "finetuned_loss"}))
    with pytest.raises(PipelineError, match="lacks finetuned_loss; run `dvc repro --force"):
        read_metrics(path)
    for damage, message in (
        ({"accuracy_delta": "high"}, "accuracy_delta: input should be a valid number"),
        ({"baseline_accuracy": 10**400}, "baseline_accuracy: input should be a valid number"),
        ({"baseline_accuracy": float("nan")}, "baseline_accuracy: input should be a finite"),
        ({"baseline_accuracy_tta": 0.5}, "has some of baseline_accuracy_tta"),
        ({"finetuned_accuracy_tta": "x"}, "finetuned_accuracy_tta: input should be a valid"),
        ({"test_images": "lots"}, "test_images: input should be a valid integer"),
    ):
        path.write_text(json.dumps(metrics | damage))
        with pytest.raises(PipelineError, match=message):
            read_metrics(path)
    path.write_text('{"baseline_accuracy": ' + "9" * 5000 + "}")
    with pytest.raises(PipelineError, match="is not valid JSON"):
        read_metrics(path)
    path.write_text("{")
    with pytest.raises(PipelineError, match="is not valid JSON"):
        read_metrics(path)


def test_per_class_accuracies_are_read_back_and_checked(tmp_path):
    path = tmp_path / "per_class.json"
    per_class = PerClass.compare(BASELINE, FINETUNED, LABELS, NAMES).model_dump()
    path.write_text(json.dumps(per_class))
    assert read_per_class(path).model_dump() == per_class
    assert per_class["most_confused"] == [
        {"actual": "c3", "predicted": "c0", "count": 1, "share": 1.0}
    ]
    assert per_class["finetuned_details"]["c0"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3, abs=1e-6),
        "support": 1,
    }
    for damage, message in (
        ({"baseline": {}}, "lacks finetuned"),
        (per_class | {"baseline": {"c0": "x"}}, r"baseline\.c0: input should be a valid number"),
        (per_class | {"finetuned": {}}, "baseline, finetuned and finetuned_details name diff"),
        (
            per_class
            | {side: {"d\udcffg": 0.5} for side in ("baseline", "finetuned")}
            | {"finetuned_details": {"d\udcffg": per_class["finetuned_details"]["c0"]}},
            "is not printable UTF-8 text",
        ),
        (
            per_class
            | {"most_confused": [{"actual": "c3", "predicted": "c0", "count": 0, "share": 0.0}]},
            "count: input should be greater",
        ),
    ):
        path.write_text(json.dumps(damage))
        with pytest.raises(PipelineError, match=message):
            read_per_class(path)
