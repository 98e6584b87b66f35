"""The written report: the headline comparison, the figure, what ran, per-class detail."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from src.finetune.data.checks import DataChecks
from src.finetune.evaluation.classical import describe as describe_classical
from src.finetune.evaluation.metrics import Metrics, PerClass
from src.finetune.export.formats import Format
from src.finetune.export.results import ExportReport
from src.finetune.params import AugmentParams, Params, Phase, PhaseParams
from src.finetune.report.plots import fine_tune_start
from src.finetune.training.history import Summary, kept_epochs


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _points(delta: float) -> str:
    return f"{100 * delta:+.2f} points"


DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def title(params: Params) -> str:
    """What made the results: ``CIFAR-10 · EfficientNetV2B0, ImageNet weights``."""
    data = DATASETS.get(params.data.source) or f"{Path(params.data.folder).name} (your images)"
    weights = {"imagenet": "ImageNet weights", "none": "random weights"}.get(
        params.model.weights, f"weights from {Path(params.model.weights).name}"
    )
    return f"{data} · {params.backbone.title}, {weights}"


def _cell(name: str) -> str:
    return name.replace("|", "\\|")  # a class folder may be named "a|b"


def noise_sentence(metrics: Metrics) -> str:
    """Whether the difference is more than the test split's noise, with its interval."""
    interval = (
        f"95% interval {_signed(metrics.accuracy_delta_ci_low)} to "
        f"{_signed(metrics.accuracy_delta_ci_high)} points"
    )
    if metrics.beyond_noise:
        return f"Beyond noise: {interval} (paired bootstrap of the test images)."
    return f"Within noise: {interval} (paired bootstrap of the test images) holds zero."


def _signed(value: float) -> str:
    return f"{100 * value:+.2f}"


def classical_lines(metrics: Metrics, params: Params) -> list[str]:
    """The fine-tuned model against the classical reference, both numbers and the interval
    of the gain; a warning first when the gain is not beyond noise. Nothing when
    ``evaluate.classical`` is none."""
    if not metrics.classical:
        return []
    what = describe_classical(params.evaluate.classical, metrics.classical_train_images)
    gain = (
        f"fine-tuned {_pct(metrics.finetuned_accuracy)} against {_pct(metrics.classical_accuracy)}"
        f" for the classical reference, {what} (gain {_points(metrics.gain_over_classical)}, "
        f"95% interval {_signed(metrics.gain_over_classical_ci_low)} to "
        f"{_signed(metrics.gain_over_classical_ci_high)})"
    )
    if metrics.beats_classical:
        return [f"It beats the classical reference beyond noise: {gain}.", ""]
    return [
        "**Warning: the fine-tuned model does not beat the classical reference beyond noise**: "
        f"{gain}. On these data the network is not worth its compute; see docs/quality.md "
        "for recipes that beat it.",
        "",
    ]


def certainty_lines(metrics: Metrics) -> list[str]:
    """The intervals, macro-F1 and calibration of both checkpoints (and the classical
    reference's interval), as a table."""
    rows = [
        "| model | test accuracy (95% interval) | macro-F1 | calibration error (ECE) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for checkpoint in ("baseline", "finetuned"):
        rows.append(
            f"| {checkpoint} | {accuracy_with_interval(metrics, checkpoint)} "
            f"| {getattr(metrics, f'{checkpoint}_macro_f1'):.4f} "
            f"| {getattr(metrics, f'{checkpoint}_ece'):.4f} |"
        )
    if metrics.classical:
        rows.append(f"| classical reference | {accuracy_with_interval(metrics, 'classical')} "
                    "| | |")  # fmt: skip
    with_tta = f" ({_pct(metrics.finetuned_val_accuracy_tta)} with TTA)" if metrics.tta else ""
    return [
        *rows,
        "",
        "Macro-F1 weighs every class alike, however few its images; the calibration error "
        "is the gap between how sure the model says it is and how often it is right (15 "
        "bins; 0 is perfectly calibrated).",
        "",
        "On the validation split the fine-tuned model is right "
        f"{_pct(metrics.finetuned_val_accuracy)} of the time{with_tta}: compare runs and "
        "choose recipes on that number; the test numbers only report the choice.",
    ]


def accuracy_with_interval(metrics: Metrics, model: str) -> str:
    """``95.54% (93.31% to 97.49%)``: a model's test accuracy and its 95% interval."""
    accuracy = getattr(metrics, f"{model}_accuracy")
    low = getattr(metrics, f"{model}_accuracy_ci_low")
    high = getattr(metrics, f"{model}_accuracy_ci_high")
    return f"{_pct(accuracy)} ({_pct(low)} to {_pct(high)})"


def detail_lines(per_class: PerClass) -> list[str]:
    """The fine-tuned model's precision, recall, F1 and support per class, and the pairs it
    confuses most."""
    lines = [
        "Fine-tuned model, per class:",
        "",
        "| class | precision | recall | F1 | test images |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {_cell(name)} | {d.precision:.3f} | {d.recall:.3f} | {d.f1:.3f} | {d.support} |"
            for name, d in per_class.finetuned_details.items()
        ),
        "",
    ]
    if not per_class.most_confused:
        return [*lines, "No test image was mistaken for another class."]
    return [
        *lines,
        "Most confused (actual -> predicted, share of the actual class's test images):",
        "",
        *(
            f"- {_cell(c.actual)} -> {_cell(c.predicted)}: {c.count} ({_pct(c.share)})"
            for c in per_class.most_confused
        ),
    ]


PICTURES = {
    "top_losses.png": "Top losses: the test images the fine-tuned model got wrong most "
    "confidently (actual / predicted, probability)",
    "grad_cam.png": "Grad-CAM: where the fine-tuned model looked, for a few right and a few "
    "wrong test images",
    "reliability.png": "Reliability: accuracy against confidence for both checkpoints",
    "confusion_matrix.png": "Confusion matrix of the fine-tuned model, normalised per class",
}


def picture_lines(pictures: Path, report: Path) -> list[str]:
    """The figures ``evaluate`` drew, linked from the report."""
    folder = Path(os.path.relpath(pictures, report.parent)).as_posix()
    lines = ["## Where the model is wrong", ""]
    for name, caption in PICTURES.items():
        lines += [f"![{caption}]({folder}/{name})", ""]
    return lines[:-1]


def verdict(delta: float) -> str:
    if abs(delta) < 0.0005:
        return "Fine-tuning left test accuracy unchanged"
    direction = "raised" if delta > 0 else "lowered"
    return f"Fine-tuning {direction} test accuracy by {abs(100 * delta):.2f} points"


def best_epoch(history: pd.DataFrame, phase: int) -> tuple[int, float]:
    rows = history[history["phase"] == phase]
    best = rows.loc[rows["val_accuracy"].idxmax()]
    return int(best["epoch"]), float(best["val_accuracy"])


def optimizer_text(phase: PhaseParams) -> str:
    """``AdamW lr 0.001, weight decay 0.05, cosine after 2 warm-up epochs``, as configured."""
    name = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD (Nesterov)"}[phase.optimizer]
    parts = [f"{name} lr {phase.lr:g}"]
    if phase.weight_decay:
        parts.append(f"weight decay {phase.weight_decay:g}")
    if phase.schedule == "cosine" or phase.warmup_epochs:
        warmup = f" after {phase.warmup_epochs} warm-up epoch(s)" if phase.warmup_epochs else ""
        parts.append(f"{phase.schedule}{warmup}")
    return ", ".join(parts)


def augmentation_text(augment: AugmentParams) -> str:
    names = {
        "flip": "horizontal flips",
        "crop_pad": "random crops after padding {} px",
        "rotation": "rotations up to {:g} turn",
        "color_jitter": "colour jitter {:g}",
        "randaugment": "RandAugment with {} operations",
        "erasing": "random erasing (p {:g})",
        "mixup": "MixUp (alpha {:g})",
        "cutmix": "CutMix (alpha {:g})",
    }
    on = [names[key].format(value) for key, value in augment.model_dump().items() if value]
    return ", ".join(on) if on else "none"


def recipe_lines(params: Params, summaries: Mapping[Phase, Summary]) -> list[str]:
    """What ran, technique by technique, so a report can be read without params.yaml."""
    lines = [
        f"- Augmentation (both phases): {augmentation_text(params.augment)}.",
        f"- Test-time augmentation: {params.evaluate.tta} extra view(s)"
        f"{'' if params.evaluate.tta_flip else ', shifted only (no mirror images)'}."
        if params.evaluate.tta
        else "- Test-time augmentation: off.",
    ]
    for phase_key in Phase:
        phase, number, summary = params.phase(phase_key), phase_key.number, summaries[phase_key]
        details = [optimizer_text(phase)]
        if phase.label_smoothing:
            details.append(f"label smoothing {phase.label_smoothing:g}")
        if phase.ema:
            details.append(f"weights averaged (EMA decay {phase.ema:g}), the average kept")
        if phase.early_stopping:
            stopped = (
                f"stopped after epoch {summary.last_epoch}"
                if summary.stopped_early
                else "ran every epoch"
            )
            details.append(
                f"early stopping (patience {phase.early_stopping}): {stopped}, "
                f"kept epoch {summary.kept_epoch}"
            )
        lines.append(f"- Phase {number}: {'; '.join(details)}.")
        groups = summary.groups
        if number == 2 and len(groups) > 1:
            rates = ", ".join(
                f"{g.name} {g.lr:.2g}"
                + (f" from epoch {g.first_epoch}" if g.first_epoch else " (never reached)")
                for g in groups
            )
            lines.append(f"  Groups (the head trains with the first): {rates}.")
        if summary.inputs:
            lines.append(f"  Inputs: {summary.inputs}.")
    return lines


def render_report(
    metrics: Metrics,
    per_class: PerClass,
    history: pd.DataFrame,
    summaries: Mapping[Phase, Summary],
    params: Params,
    exports: ExportReport,
    checks: DataChecks,
    *,
    title: str,
    figure: Path,
    report: Path,
    pictures: Path,
) -> str:
    start = fine_tune_start(history)
    last = int(history["epoch"].max())
    kept = kept_epochs(summaries)
    best1, best1_acc = best_epoch(history, 1)
    best2, best2_acc = best_epoch(history, 2)
    image = Path(os.path.relpath(figure, report.parent)).as_posix()
    tta = metrics.tta
    tta_head = " test accuracy with TTA |" if tta else ""
    tta_rule = " ---: |" if tta else ""

    def tta_cell(key: str, points: bool = False) -> str:
        if not tta:
            return ""
        return f" {_points(getattr(metrics, key)) if points else _pct(getattr(metrics, key))} |"

    lines = [
        f"# Feature extraction vs fine-tuning: {title}",
        "",
        *classical_lines(metrics, params),
        f"{verdict(metrics.accuracy_delta)} "
        f"({_pct(metrics.baseline_accuracy)} -> {_pct(metrics.finetuned_accuracy)} "
        f"on {metrics.test_images} test images). {noise_sentence(metrics)}",
        "",
        f"| checkpoint | epochs | kept epoch | test accuracy | test loss |{tta_head}",
        f"| --- | --- | ---: | ---: | ---: |{tta_rule}",
        f"| baseline: frozen base, new head ({optimizer_text(params.phase1)}) | 1-{start - 1} "
        f"| {kept[Phase.EXTRACT]} | {_pct(metrics.baseline_accuracy)} "
        f"| {metrics.baseline_loss:.4f} |{tta_cell('baseline_accuracy_tta')}",
        f"| fine-tuned: {params.finetuned_part()} "
        f"({optimizer_text(params.phase2)}) | {start}-{last} | {kept[Phase.FINETUNE]} "
        f"| {_pct(metrics.finetuned_accuracy)} | {metrics.finetuned_loss:.4f} "
        f"|{tta_cell('finetuned_accuracy_tta')}",
        f"| change | | | {_points(metrics.accuracy_delta)} "
        f"| {metrics.finetuned_loss - metrics.baseline_loss:+.4f} "
        f"|{tta_cell('accuracy_delta_tta', points=True)}",
        "",
        f"Base: {params.backbone.title}, {params.backbone.weights_source(params.model.weights)}.",
        "",
        f"![Validation accuracy, loss and learning rate over epochs 1-{last}; fine-tuning starts "
        f"at epoch {start}; stars mark the epochs kept]({image})",
        "",
        "## How sure, and where it is wrong",
        "",
        *certainty_lines(metrics),
        "",
        "## What ran",
        "",
        *recipe_lines(params, summaries),
        "",
        "## Validation curves",
        "",
        f"- Best validation accuracy in phase 1: {_pct(best1_acc)} at epoch {best1}.",
        f"- Best validation accuracy in phase 2: {_pct(best2_acc)} at epoch {best2}.",
        f"- Validation loss went from {history['val_loss'].iloc[start - 2]:.4f} at the end of "
        f"phase 1 to {history['val_loss'].iloc[-1]:.4f} at epoch {last}.",
        "",
        "## Per-class test accuracy",
        "",
        "| class | baseline | fine-tuned | change |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, base in per_class.baseline.items():
        tuned = per_class.finetuned[name]
        change = "n/a" if base is None or tuned is None else _points(tuned - base)
        lines.append(f"| {_cell(name)} | {_pct(base)} | {_pct(tuned)} | {change} |")
    lines += ["", *detail_lines(per_class), "", *picture_lines(pictures, report)]
    lines += ["", "## Exports", "", *exports_section(exports)]
    lines += ["", "## Data checks", "", *data_lines(checks)]
    return "\n".join(lines) + "\n"


def data_lines(checks: DataChecks) -> list[str]:
    """What prepare found in the splits: sizes, balance, duplicates, its warnings."""
    sizes = ", ".join(f"{n} {split}" for split, n in checks.images.items())
    lines = [
        f"Images: {sizes}; the largest class has {checks.imbalance_ratio:g} times the training "
        "images of the smallest.",
    ]
    if checks.removed:
        dropped = ", ".join(f"{n} from {split}" for split, n in checks.removed.items())
        lines.append(f"data.dedupe removed {dropped} (the later copy of each duplicate).")
    if not checks.duplicates:
        lines.append("No duplicate images within or across the splits.")
    for finding in checks.duplicates:
        where = finding.a if finding.a == finding.b else f"{finding.a} and {finding.b}"
        first = " = ".join(finding.examples[0])
        lines.append(f"- {finding.kind} duplicates in {where}: {finding.pairs} (e.g. {first})")
    lines += [f"- Warning: {warning}" for warning in checks.warnings]
    return lines


def exports_section(exports: ExportReport) -> list[str]:
    """The fine-tuned model in each format, checked in its own runtime on the test split."""
    if not exports.exports and not exports.failed:
        return ["None (export.formats is empty)."]
    return [
        f"Each export run in its own runtime on the {exports.test_images} test images; "
        "latency on this machine's CPU, per image (see `reports/model_card.md`).",
        "",
        *exports_table(exports),
    ]


def exports_table(exports: ExportReport) -> list[str]:
    """One row per model: the Keras checkpoint, then each export, measured on the test split."""
    lines = [
        "| format | runtime | file | size | test accuracy | agrees with Keras "
        "| ms per image (batch 1) | ms per image (batch 32) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for checked in (exports.keras, *exports.exports):
        runtime = "Keras" if checked is exports.keras else Format(checked.format).runtime
        lines.append(
            f"| {checked.format} | {runtime} | `{checked.path}` | {checked.size_mb:.1f} MB "
            f"| {_pct(checked.accuracy)} | {_pct(checked.agreement)} "
            f"| {checked.latency_ms_batch1:.2f} | {checked.latency_ms_batch32:.2f} |"
        )
    lines += [f"- {name} failed: {why}" for name, why in exports.failed.items()]
    lines += [f"- Warning: {warning}" for warning in exports.warnings]
    return lines
