"""The learning-curve figure: both phases on one epoch axis, where fine-tuning starts and
which epoch each phase kept marked, and the learning rate underneath.

Drawn with matplotlib's object API (a ``Figure`` of its own, not pyplot), which needs no
display and no backend chosen on import: the stages run headless.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from src.finetune.files import atomic_path
from src.finetune.params import Phase


def fine_tune_start(history: pd.DataFrame) -> int:
    """The first epoch of phase 2."""
    return int(history.loc[history["phase"] == Phase.FINETUNE.number, "epoch"].min())


def plot_learning_curves(
    history: pd.DataFrame, kept: Mapping[Phase, int], title: str, path: Path
) -> None:
    figure = learning_curves_figure(history, kept, title)
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=120, bbox_inches="tight")


def learning_curves_figure(history: pd.DataFrame, kept: Mapping[Phase, int], title: str) -> Figure:
    """Validation accuracy (in %) and loss, training curves fainter behind them, and the
    learning rate; ``kept`` maps each phase to the epoch whose weights it kept.

    Legends sit to the right of the panels, never over the curves.
    """
    start = fine_tune_start(history)
    epochs = history["epoch"]
    panels = 3 if "lr" in history and history["lr"].notna().any() else 2
    figure = Figure(figsize=(10, 3.2 * panels))
    axes = figure.subplots(panels, 1, sharex=True, height_ratios=[3, 3, 2][:panels])
    for axis, metric, scale in ((axes[0], "accuracy", 100), (axes[1], "loss", 1)):
        axis.plot(
            epochs, scale * history[f"val_{metric}"], marker="o", label=f"validation {metric}"
        )
        axis.plot(
            epochs, scale * history[metric], color="grey", alpha=0.6, label=f"training {metric}"
        )
        for phase, epoch in sorted(kept.items()):
            value = scale * history.loc[epochs == epoch, f"val_{metric}"]
            axis.plot(
                [epoch] * len(value), value, marker="*", markersize=16, linestyle="none",
                color="tab:red", label=f"kept by phase {phase.number} (epoch {epoch})",
            )  # fmt: skip
        axis.set_ylabel(f"{metric} (%)" if scale == 100 else metric)
    axes[0].yaxis.set_major_formatter(PercentFormatter(decimals=0))
    if panels == 3:
        axes[2].plot(epochs, history["lr"], marker=".", color="tab:green", label="learning rate")
        axes[2].set_yscale("log")
        axes[2].set_ylabel("learning rate\n(top group)")
    for axis in axes:
        axis.axvline(
            start - 0.5, color="black", linestyle="--", label=f"fine-tuning starts (epoch {start})"
        )
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[0].set_title(title)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlim(0.5, epochs.max() + 0.5)
    figure.tight_layout()
    return figure
