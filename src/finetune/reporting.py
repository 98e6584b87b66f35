"""The written report: the headline comparison, the figure, per-class and per-phase detail."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from src.finetune.params import Params
from src.finetune.plots import fine_tune_start


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _points(delta: float) -> str:
    return f"{100 * delta:+.2f} points"


def verdict(delta: float) -> str:
    if abs(delta) < 0.0005:
        return "Fine-tuning left test accuracy unchanged"
    direction = "raised" if delta > 0 else "lowered"
    return f"Fine-tuning {direction} test accuracy by {abs(100 * delta):.2f} points"


def best_epoch(history: pd.DataFrame, phase: int) -> tuple[int, float]:
    rows = history[history["phase"] == phase]
    best = rows.loc[rows["val_accuracy"].idxmax()]
    return int(best["epoch"]), float(best["val_accuracy"])


def render_report(
    metrics: dict, history: pd.DataFrame, params: Params, figure: Path, report: Path
) -> str:
    start = fine_tune_start(history)
    last = int(history["epoch"].max())
    best1, best1_acc = best_epoch(history, 1)
    best2, best2_acc = best_epoch(history, 2)
    per_class = metrics["per_class_accuracy"]
    image = Path(os.path.relpath(figure, report.parent)).as_posix()
    lines = [
        "# CIFAR-10 transfer learning: feature extraction vs fine-tuning",
        "",
        f"{verdict(metrics['accuracy_delta'])} "
        f"({_pct(metrics['baseline_accuracy'])} -> {_pct(metrics['finetuned_accuracy'])} "
        f"on {metrics['test_images']} test images).",
        "",
        "| checkpoint | epochs | test accuracy | test loss |",
        "| --- | --- | ---: | ---: |",
        f"| baseline: frozen base, new head (Adam lr {params.phase1.lr:g}) | 1-{start - 1} "
        f"| {_pct(metrics['baseline_accuracy'])} | {metrics['baseline_loss']:.4f} |",
        f"| fine-tuned: last {params.phase2.unfreeze_last} base layers unfrozen, BatchNorm frozen "
        f"(Adam lr {params.phase2.lr:g}) | {start}-{last} "
        f"| {_pct(metrics['finetuned_accuracy'])} | {metrics['finetuned_loss']:.4f} |",
        f"| change | | {_points(metrics['accuracy_delta'])} "
        f"| {metrics['finetuned_loss'] - metrics['baseline_loss']:+.4f} |",
        "",
        f"Base weights: `{params.model.weights}`.",
        "",
        f"![Validation accuracy and loss over epochs 1-{last}; fine-tuning starts at epoch "
        f"{start}]({image})",
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
    for name, base in per_class["baseline"].items():
        tuned = per_class["finetuned"][name]
        change = "n/a" if base is None or tuned is None else _points(tuned - base)
        lines.append(f"| {name} | {_pct(base)} | {_pct(tuned)} | {change} |")
    return "\n".join(lines) + "\n"
