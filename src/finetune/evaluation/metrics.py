"""The numbers ``evaluate`` writes, declared once as the typed files they are read back as.

``Metrics`` is metrics.json: its fields are the headline of every run (the comparison in
``dvc metrics show``, the evaluate run and the execution's comparison run), each TTA number
beside its plain one, with how sure each is (see ``analysis``). TensorFlow-free: the report
stage and the relog tool read metrics without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from src.finetune.environment import rerun
from src.finetune.evaluation import analysis
from src.finetune.files import read_json, write_json
from src.finetune.model.labels import is_class_name
from src.finetune.numbers import Amount, Count, Delta, Fraction, Positive

# The two checkpoints compared, in the order trackers list their numbers.
CHECKPOINTS = ("finetuned", "baseline")


@dataclass(frozen=True)
class ClassicalScores:
    """The classical reference on the test split: its predicted classes, and how many
    training images it was fitted on."""

    predictions: np.ndarray
    train_images: int


@dataclass(frozen=True)
class Scores:
    """One checkpoint on the test split: its class probabilities for every test image."""

    loss: float
    accuracy: float
    probabilities: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


class Metrics(BaseModel):
    """metrics.json: both checkpoints' test accuracy and loss, their difference, and with
    test-time augmentation the three ``_tta`` accuracies too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline_accuracy: Fraction
    finetuned_accuracy: Fraction
    accuracy_delta: Delta
    baseline_loss: Amount
    finetuned_loss: Amount
    # 95% bootstrap intervals, the same resamples for both models (``analysis``)
    baseline_accuracy_ci_low: Fraction
    baseline_accuracy_ci_high: Fraction
    finetuned_accuracy_ci_low: Fraction
    finetuned_accuracy_ci_high: Fraction
    accuracy_delta_ci_low: Delta
    accuracy_delta_ci_high: Delta
    baseline_macro_f1: Fraction
    finetuned_macro_f1: Fraction
    baseline_ece: Fraction  # expected calibration error, 15 bins
    finetuned_ece: Fraction
    # The classical reference (``classical``) on the same test images, and the fine-tuned
    # model's gain over it, with intervals from the same resamples
    classical_accuracy: Fraction | None = None
    classical_accuracy_ci_low: Fraction | None = None
    classical_accuracy_ci_high: Fraction | None = None
    gain_over_classical: Delta | None = None
    gain_over_classical_ci_low: Delta | None = None
    gain_over_classical_ci_high: Delta | None = None
    classical_train_images: Positive | None = None
    # The fine-tuned model on the validation split: what a choice between runs is made on
    # (test numbers only report the choice), TTA's own included.
    finetuned_val_accuracy: Fraction
    baseline_accuracy_tta: Fraction | None = None
    finetuned_accuracy_tta: Fraction | None = None
    accuracy_delta_tta: Delta | None = None
    finetuned_val_accuracy_tta: Fraction | None = None
    test_images: Positive

    @model_validator(mode="after")
    def _optional_parts_whole(self) -> Metrics:
        for part in (TTA_HEADLINE, CLASSICAL_KEYS):
            given = [getattr(self, key) is not None for key in part]
            if any(given) and not all(given):
                raise ValueError(f"it has some of {', '.join(part)} but not all")
        return self

    @classmethod
    def compare(
        cls,
        baseline: Scores,
        finetuned: Scores,
        labels: np.ndarray,
        tta: tuple[Scores, Scores] | None = None,
        classical: ClassicalScores | None = None,
        *,
        val: tuple[float, float | None],
    ) -> Metrics:
        """The comparison of the two checkpoints on the test ``labels``, with TTA when it
        ran, and against the classical reference when it ran; ``val`` is the fine-tuned
        model's validation accuracy, without and with TTA."""
        with_tta = {}
        if tta is not None:
            with_tta = {
                "baseline_accuracy_tta": tta[0].accuracy,
                "finetuned_accuracy_tta": tta[1].accuracy,
                "accuracy_delta_tta": tta[1].accuracy - tta[0].accuracy,
                "finetuned_val_accuracy_tta": val[1],
            }
        models = {"baseline": baseline.predictions, "finetuned": finetuned.predictions}
        if classical is not None:
            models["classical"] = classical.predictions
        paired = analysis.Bootstrap(labels, models)
        intervals = {
            "baseline_accuracy": paired.accuracy("baseline"),
            "finetuned_accuracy": paired.accuracy("finetuned"),
            "accuracy_delta": paired.difference("finetuned", "baseline"),
        }
        against_classical = {}
        if classical is not None:
            accuracy = float(np.mean(classical.predictions == labels))
            low_high = {
                "classical_accuracy": paired.accuracy("classical"),
                "gain_over_classical": paired.difference("finetuned", "classical"),
            }
            against_classical = {
                "classical_accuracy": accuracy,
                "gain_over_classical": finetuned.accuracy - accuracy,
                **{f"{key}_ci_low": i.low for key, i in low_high.items()},
                **{f"{key}_ci_high": i.high for key, i in low_high.items()},
                "classical_train_images": classical.train_images,
            }
        classes = baseline.probabilities.shape[1]
        return cls(
            baseline_accuracy=baseline.accuracy,
            finetuned_accuracy=finetuned.accuracy,
            accuracy_delta=finetuned.accuracy - baseline.accuracy,
            baseline_loss=baseline.loss,
            finetuned_loss=finetuned.loss,
            **{f"{key}_ci_low": i.low for key, i in intervals.items()},
            **{f"{key}_ci_high": i.high for key, i in intervals.items()},
            **against_classical,
            baseline_macro_f1=analysis.macro_f1(labels, baseline.predictions, classes),
            finetuned_macro_f1=analysis.macro_f1(labels, finetuned.predictions, classes),
            baseline_ece=analysis.reliability(
                baseline.probabilities, labels
            ).expected_calibration_error,
            finetuned_ece=analysis.reliability(
                finetuned.probabilities, labels
            ).expected_calibration_error,
            finetuned_val_accuracy=val[0],
            test_images=len(labels),
            **with_tta,
        )

    @property
    def beyond_noise(self) -> bool:
        """Whether the difference's 95% interval leaves out zero."""
        return self.accuracy_delta_ci_low > 0 or self.accuracy_delta_ci_high < 0

    @property
    def tta(self) -> bool:
        return self.accuracy_delta_tta is not None

    @property
    def classical(self) -> bool:
        """Whether the classical reference ran (``evaluate.classical`` is not none)."""
        return self.classical_accuracy is not None

    @property
    def beats_classical(self) -> bool:
        """Whether the fine-tuned model beats the classical reference beyond noise: the 95%
        interval of its gain lies above zero. False when the reference did not run."""
        return self.classical and self.gain_over_classical_ci_low > 0

    def headline(self) -> dict[str, float]:
        """Every number but the image count, TTA ones included when they ran: the fine-tuned
        model's first, then the baseline's, then their difference, the order a tracker
        lists them in."""
        numbers = {key: float(value) for key, value in self._numbers().items()}
        return dict(sorted(numbers.items(), key=lambda item: _rank(item[0])))

    def of(self, checkpoint: str) -> dict[str, float]:
        """The headline numbers of one checkpoint (``baseline`` or ``finetuned``)."""
        return {key: v for key, v in self.headline().items() if key.startswith(checkpoint)}

    def _numbers(self) -> dict[str, float]:
        return {
            key: value
            for key, value in self.model_dump().items()
            if key not in COUNTS and value is not None
        }


def _rank(key: str) -> int:
    """Where a headline number goes: the fine-tuned model's, the baseline's, the rest."""
    ranks = (rank for rank, checkpoint in enumerate(CHECKPOINTS) if key.startswith(checkpoint))
    return next(ranks, len(CHECKPOINTS))


COUNTS = ("test_images", "classical_train_images")  # image counts: not results to compare
CLASSICAL_KEYS = tuple(key for key in Metrics.model_fields if "classical" in key)
TTA_HEADLINE = tuple(key for key in Metrics.model_fields if key.endswith("_tta"))
HEADLINE = tuple(
    key
    for key in Metrics.model_fields
    if key not in COUNTS and key not in TTA_HEADLINE and key not in CLASSICAL_KEYS
)


class ClassDetail(BaseModel):
    """The fine-tuned model on one class's test images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Fraction
    recall: Fraction
    f1: Fraction
    support: Count


class Confusion(BaseModel):
    """Test images of class ``actual`` the fine-tuned model calls ``predicted``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actual: str
    predicted: str
    count: Positive
    share: Fraction  # of the actual class's test images


class PerClass(BaseModel):
    """per_class.json: each checkpoint's accuracy within each class, by name (None for a class
    absent from the test split); the fine-tuned model's precision, recall, F1 and support per
    class; the pairs it confuses most.

    Kept out of metrics.json: ten classes (or a hundred) times two checkpoints would make
    `dvc metrics show` and `dvc exp show` tables too wide to read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: dict[str, Fraction | None]
    finetuned: dict[str, Fraction | None]
    finetuned_details: dict[str, ClassDetail]
    most_confused: list[Confusion]

    @model_validator(mode="after")
    def _same_classes(self) -> PerClass:
        if not list(self.baseline) == list(self.finetuned) == list(self.finetuned_details):
            raise ValueError("baseline, finetuned and finetuned_details name different classes")
        for name in self.baseline:
            if not is_class_name(name):
                raise ValueError(f"class name {name[:100]!r} is not printable UTF-8 text")
        return self

    @classmethod
    def compare(
        cls, baseline: Scores, finetuned: Scores, labels: np.ndarray, class_names: tuple[str, ...]
    ) -> PerClass:
        return cls(
            baseline=per_class_accuracy(labels, baseline.predictions, class_names),
            finetuned=per_class_accuracy(labels, finetuned.predictions, class_names),
            finetuned_details=analysis.class_report(labels, finetuned.predictions, class_names),
            most_confused=analysis.most_confused(labels, finetuned.predictions, class_names),
        )


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


def confusion_rows(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]
) -> pd.DataFrame:
    """One row per test image, the shape DVC's ``confusion`` plot template reads."""
    names = np.array(class_names)
    return pd.DataFrame({"actual": names[labels], "predicted": names[predictions]})


def write_metrics(path: Path, metrics: Metrics) -> None:
    """metrics.json; without TTA it has no ``_tta`` keys, not keys set to null."""
    write_json(path, metrics.model_dump(exclude_none=True))


def write_per_class(path: Path, per_class: PerClass) -> None:
    write_json(path, per_class.model_dump())


def read_metrics(path: Path) -> Metrics:
    """metrics.json as ``evaluate`` writes it, or one line saying what is wrong with it."""
    return read_json(path, Metrics, f"run {rerun('evaluate', force=True)} to rewrite it")


def read_per_class(path: Path) -> PerClass:
    """per_class.json as ``evaluate`` writes it, or one line saying what is wrong with it."""
    return read_json(path, PerClass, f"run {rerun('evaluate', force=True)} to rewrite it")
