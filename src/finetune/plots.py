"""The learning-curve figure: both phases on one epoch axis, fine-tuning marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # stages run headless

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from src.finetune.files import atomic_path


def fine_tune_start(history: pd.DataFrame) -> int:
    """The first epoch of phase 2."""
    return int(history.loc[history["phase"] == 2, "epoch"].min())


def plot_learning_curves(history: pd.DataFrame, path: Path) -> None:
    figure = learning_curves_figure(history)
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=120)
    plt.close(figure)


def learning_curves_figure(history: pd.DataFrame) -> Figure:
    """Validation accuracy (top) and loss (bottom), training curves fainter behind them."""
    start = fine_tune_start(history)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for axis, metric, title in (
        (top, "accuracy", "Accuracy"),
        (bottom, "loss", "Loss"),
    ):
        axis.plot(
            history["epoch"], history[f"val_{metric}"], marker="o", label=f"validation {metric}"
        )
        axis.plot(
            history["epoch"], history[metric], color="grey", alpha=0.6, label=f"training {metric}"
        )
        axis.axvline(
            start - 0.5, color="black", linestyle="--", label=f"fine-tuning starts (epoch {start})"
        )
        axis.set_title(f"{title} over both phases")
        axis.set_ylabel(metric)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower right" if metric == "accuracy" else "upper right")
    bottom.set_xlabel("epoch")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlim(0.5, history["epoch"].max() + 0.5)
    figure.tight_layout()
    return figure
