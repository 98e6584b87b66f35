"""Stage 4: test-set accuracy of both checkpoints, their difference and how sure it is, the
classical reference on the same test images, and where the fine-tuned model is wrong: per
class, the most confused pairs, the top losses, Grad-CAM, calibration and the confusion
matrix."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from src.finetune.data.prepared import load_info, load_split
from src.finetune.data.splits import Split
from src.finetune.evaluation import analysis
from src.finetune.evaluation.classical import fit_classical
from src.finetune.evaluation.gradcam import grad_cam
from src.finetune.evaluation.metrics import (
    CHECKPOINTS,
    ClassicalScores,
    Metrics,
    PerClass,
    Scores,
    confusion_rows,
    write_metrics,
    write_per_class,
)
from src.finetune.evaluation.scoring import score
from src.finetune.files import atomic_dir, atomic_path, write_csv
from src.finetune.model.checkpoints import check_checkpoint, load_checkpoint
from src.finetune.params import Params, load_params
from src.finetune.report import plots
from src.stages.declaration import File, Log, Stage

STAGE = Stage(
    name="evaluate",
    doc=__doc__,
    params=("seed", "evaluate"),
    inputs={
        "data": File("data/prepared", "prepared splits"),
        "baseline": File("models/phase1.keras", "phase 1 checkpoint"),
        "finetuned": File("models/phase2.keras", "phase 2 checkpoint"),
    },
    outputs={
        "metrics": File("reports/metrics.json", "metrics JSON to write", Log.STAGE),
        "per-class": File("reports/per_class.json", "per-class JSON to write", Log.STAGE),
        "confusion": File("reports/confusion.csv", "confusion CSV to write", Log.STAGE),
        "reliability": File("reports/reliability.csv", "reliability CSV to write", Log.STAGE),
        "pictures": File("reports/evaluation", "folder for the figures", Log.COMPARISON),
    },
)
log = logging.getLogger(STAGE.name)
PICTURES = 16  # top losses shown
GRAD_CAM = 8  # Grad-CAM maps: half right, half wrong (fewer wrong when fewer are)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    params = load_params()
    test, info = load_split(paths.data, "test"), load_info(paths.data)
    baseline_model = load_checkpoint(paths.baseline, made_by="phase1_extract")
    finetuned_model = load_checkpoint(paths.finetuned, made_by="phase2_finetune")
    for model, path in ((baseline_model, paths.baseline), (finetuned_model, paths.finetuned)):
        check_checkpoint(model, path, params.model.backbone, info.image_shape, info.class_names)
    tta = params.evaluate.tta

    with STAGE.tracked(params, paths) as tracker:
        baseline, finetuned = score(baseline_model, test), score(finetuned_model, test)
        flip = params.evaluate.tta_flip
        with_tta = (
            (score(baseline_model, test, tta, flip), score(finetuned_model, test, tta, flip))
            if tta
            else None
        )
        val = load_split(paths.data, "val")
        val_accuracy = (
            score(finetuned_model, val).accuracy,
            score(finetuned_model, val, tta, flip).accuracy if tta else None,
        )
        classical = classical_scores(paths.data, test, params)
        metrics = Metrics.compare(
            baseline, finetuned, test.labels, with_tta, classical, val=val_accuracy
        )
        per_class = PerClass.compare(baseline, finetuned, test.labels, info.class_names)
        confusion = confusion_rows(test.labels, finetuned.predictions, info.class_names)
        # The outputs appear together or none does.
        with (
            atomic_path(paths.metrics) as metrics_path,
            atomic_path(paths.per_class) as per_class_path,
            atomic_path(paths.confusion) as confusion_path,
            atomic_path(paths.reliability) as reliability_path,
            atomic_dir(paths.pictures) as pictures,
        ):
            write_metrics(metrics_path, metrics)
            write_per_class(per_class_path, per_class)
            write_csv(confusion_path, confusion)
            write_csv(reliability_path, reliability_rows(baseline, finetuned, test.labels))
            draw_pictures(pictures, finetuned_model, test, info.class_names, (baseline, finetuned))
        log.info(
            "test accuracy: baseline %.4f, fine-tuned %.4f, delta %+.4f%s",
            metrics.baseline_accuracy,
            metrics.finetuned_accuracy,
            metrics.accuracy_delta,
            f"; with {tta} TTA view(s): baseline {metrics.baseline_accuracy_tta:.4f}, "
            f"fine-tuned {metrics.finetuned_accuracy_tta:.4f}"
            if metrics.tta
            else "",
        )
        if metrics.classical:
            log_against_classical(metrics)
        # Linked to the logged models first, so the comparison run gets each number once;
        # they are its first metrics, the ones MLflow lists first.
        tracker.link_model_metrics(
            {f"{checkpoint}_model": metrics.of(checkpoint) for checkpoint in CHECKPOINTS}
        )
        tracker.log_results(metrics.headline(), comparison=True)
        STAGE.record(tracker, paths)


def classical_scores(data: Path, test: Split, params: Params) -> ClassicalScores | None:
    """The classical reference fitted on the training split (never validation or test) and
    its predictions for the test images; None with ``evaluate.classical: none``."""
    kind = params.evaluate.classical
    if kind == "none":
        return None
    started = time.monotonic()
    model = fit_classical(
        kind, load_split(data, "train"), params.evaluate.classical_images, params.seed
    )
    predictions = model.predict(test.images)
    log.info("classical reference: %s (%.1f s)", model.describe(), time.monotonic() - started)
    return ClassicalScores(predictions, model.train_images)


def log_against_classical(metrics: Metrics) -> None:
    """The fine-tuned model against the classical reference, a warning when it does not beat
    it beyond noise: a network that an SVM on pixels matches is not worth its compute."""
    numbers = (
        f"fine-tuned {metrics.finetuned_accuracy:.4f}, classical reference "
        f"{metrics.classical_accuracy:.4f} (gain {100 * metrics.gain_over_classical:+.2f} "
        f"points, 95% interval {100 * metrics.gain_over_classical_ci_low:+.2f} to "
        f"{100 * metrics.gain_over_classical_ci_high:+.2f})"
    )
    if metrics.beats_classical:
        log.info("the fine-tuned model beats the classical reference beyond noise: %s", numbers)
    else:
        log.warning(
            "warning: the fine-tuned model does not beat the classical reference beyond noise: "
            "%s; it is not worth its compute on these data",
            numbers,
        )


def reliability_rows(baseline: Scores, finetuned: Scores, labels: np.ndarray) -> pd.DataFrame:
    """The reliability curve for `dvc plots`: per confidence bin, each checkpoint's accuracy
    (bins without an image left out)."""
    rows = {}
    for name, scores in (("baseline", baseline), ("finetuned", finetuned)):
        bins = analysis.reliability(scores.probabilities, labels)
        rows[f"{name}_accuracy"] = np.where(bins.count > 0, bins.accuracy, np.nan)
    edges = np.linspace(0, 1, analysis.CALIBRATION_BINS + 1)
    frame = pd.DataFrame({"confidence": (edges[:-1] + edges[1:]) / 2, **rows})
    return frame.dropna(how="all", subset=list(rows)).round(6)


def draw_pictures(
    folder: Path,
    model: keras.Model,
    test: Split,
    class_names: tuple[str, ...],
    scores: tuple[Scores, Scores],
) -> None:
    """Top losses, Grad-CAM, the reliability diagram and the confusion matrix, as PNGs."""
    baseline, finetuned = scores
    labels, probabilities = test.labels, finetuned.probabilities
    worst = analysis.top_losses(probabilities, labels, PICTURES)
    images = np.asarray(test.images[worst])
    plots.save(plots.top_losses_figure(images, [caption(i, finetuned, labels, class_names)
                                                for i in worst]),
               folder / "top_losses.png")  # fmt: skip
    right = right_examples(finetuned.predictions, labels, GRAD_CAM // 2)
    shown = np.concatenate([right, worst[: GRAD_CAM - len(right)]]).astype(int)
    shown_images = np.asarray(test.images[shown])
    maps = grad_cam(model, shown_images.astype(np.float32), finetuned.predictions[shown])
    plots.save(plots.grad_cam_figure(shown_images, maps, [caption(i, finetuned, labels,
                                                                  class_names) for i in shown]),
               folder / "grad_cam.png")  # fmt: skip
    curves, eces = {}, {}
    for name, checkpoint in (("baseline", baseline), ("finetuned", finetuned)):
        bins = analysis.reliability(checkpoint.probabilities, labels)
        curves[name] = (bins.confidence, bins.accuracy, bins.count)
        eces[name] = bins.expected_calibration_error
    plots.save(plots.reliability_figure(curves, eces), folder / "reliability.png")
    matrix = confusion_matrix(labels, finetuned.predictions, labels=range(len(class_names)))
    plots.save(plots.confusion_figure(matrix, class_names), folder / "confusion_matrix.png")


def right_examples(predictions: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` rightly classified test images of as many different classes, spread
    over the classes (the first right image of each)."""
    correct = np.flatnonzero(predictions == labels)
    _, first = np.unique(labels[correct], return_index=True)
    chosen = np.linspace(0, len(first) - 1, min(count, len(first))).round().astype(int)
    return correct[first[chosen]] if len(first) else correct[:0]


def caption(index: int, scores: Scores, labels: np.ndarray, class_names: tuple[str, ...]) -> str:
    predicted = int(scores.predictions[index])
    probability = scores.probabilities[index, predicted]
    return f"{class_names[labels[index]][:14]} / {class_names[predicted][:14]}\np={probability:.2f}"


if __name__ == "__main__":
    STAGE.run(main)
