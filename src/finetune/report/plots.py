"""The learning-curve figure: both phases on one epoch axis, where fine-tuning starts and
which epoch each phase kept marked, and the learning rate underneath.

Drawn with matplotlib's object API (a ``Figure`` of its own, not pyplot), which needs no
display and no backend chosen on import: the stages run headless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from src.finetune.files import atomic_path
from src.finetune.params import Phase


class RateSweepLike(Protocol):
    """What the range test's figure reads of a sweep (``training.rate_range.RateSweep``)."""

    rates: Sequence[float]
    losses: Sequence[float]
    raw_losses: Sequence[float]
    suggested: float
    minimum: float
    stopped: str


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
        rates = history["lr"]
        axes[2].plot(epochs, rates, marker=".", color="tab:green", label="learning rate")
        set_rate_scale(axes[2], rates)
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


def set_rate_scale(axis: Axes, rates: pd.Series) -> None:
    """Log scale, so that rates orders of magnitude apart both show; where a schedule ends
    at 0 (cosine to the end), symmetric-log, linear below the smallest rate above 0, so
    that the epoch at 0 shows too instead of falling off a log axis."""
    positive = rates[rates > 0]
    if (rates == 0).any() and len(positive):
        axis.set_yscale("symlog", linthresh=float(positive.min()))
        axis.set_ylim(bottom=0)
    else:
        axis.set_yscale("log")


# --- what evaluate draws: where the model is wrong, how sure it is --------------------------


def save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=110, bbox_inches="tight")


def _grid(count: int, columns: int = 4) -> tuple[Figure, list]:
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(2.6 * columns, 2.9 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for axis in axes:
        axis.axis("off")
    return figure, axes


def _shown(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else image


def top_losses_figure(images: np.ndarray, captions: list[str], title: str = "Top losses") -> Figure:
    """The most confidently wrong test images, each captioned true / predicted / probability."""
    figure, axes = _grid(len(images))
    for axis, image, caption in zip(axes, images, captions, strict=False):
        axis.imshow(_shown(image), cmap="gray" if image.shape[-1] == 1 else None)
        axis.set_title(caption, fontsize="small")
    if not len(images):
        axes[0].text(0.5, 0.5, "no test image was wrong", ha="center", va="center")
    figure.suptitle(title)
    return figure


def grad_cam_figure(images: np.ndarray, maps: np.ndarray, captions: list[str]) -> Figure:
    """Each image with its Grad-CAM map laid over it (red: where the model looked)."""
    figure, axes = _grid(len(images))
    for axis, image, heat, caption in zip(axes, images, maps, captions, strict=False):
        height, width = image.shape[:2]
        axis.imshow(_shown(image), cmap="gray" if image.shape[-1] == 1 else None)
        axis.imshow(heat, cmap="jet", alpha=0.45, extent=(0, width, height, 0),
                    interpolation="bilinear")  # fmt: skip
        axis.set_title(caption, fontsize="small")
    figure.suptitle("Grad-CAM of the fine-tuned model: right, then wrong (actual / predicted)")
    return figure


# A reliability bin with fewer images than this says little: drawn hollow, off the line.
MIN_BIN_IMAGES = 10


def reliability_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                       eces: Mapping[str, float]) -> Figure:  # fmt: skip
    """Accuracy against confidence per bin for each checkpoint, the diagonal being perfect,
    and below it how many test images each bin holds: a bin of three images zig-zags between
    0.33 and 1.0 whatever the model, so bins under ``MIN_BIN_IMAGES`` are hollow markers off
    the line, and the counts show how much each point weighs."""
    figure = Figure(figsize=(5.5, 6.5))
    axis, counts = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for index, (name, (confidence, accuracy, count)) in enumerate(curves.items()):
        solid = count >= MIN_BIN_IMAGES
        sparse = (count > 0) & ~solid
        (line,) = axis.plot(confidence[solid], accuracy[solid], marker="o",
                            label=f"{name} (ECE {eces[name]:.3f})")  # fmt: skip
        axis.scatter(confidence[sparse], accuracy[sparse], facecolors="none",
                     edgecolors=line.get_color())  # fmt: skip
        bins = len(count)
        centres, width = (np.arange(bins) + 0.5) / bins, 0.8 / bins / len(curves)
        counts.bar(centres + (index - (len(curves) - 1) / 2) * width, count, width,
                   color=line.get_color(), label=name)  # fmt: skip
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left", fontsize="small",
                title=f"hollow: bins of fewer than {MIN_BIN_IMAGES} images",
                title_fontsize="x-small")  # fmt: skip
    axis.set_title("Reliability on the test split")
    counts.set_xlabel("confidence (top probability)")
    counts.set_ylabel("test images")
    counts.set_yscale("symlog")
    counts.grid(True, alpha=0.3)
    return figure


def confusion_figure(matrix: np.ndarray, class_names: tuple[str, ...]) -> Figure:
    """The confusion matrix normalised per actual class (rows sum to 100%)."""
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = min(2 + 0.45 * len(class_names), 24)
    figure = Figure(figsize=(size + 1.5, size))
    axis = figure.subplots()
    shown = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90, fontsize="small")
    axis.set_yticks(ticks, class_names, fontsize="small")
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    if len(class_names) <= 20:
        for (row, column), share in np.ndenumerate(shares):
            if share >= 0.005:
                color = "white" if share > 0.5 else "black"
                axis.text(column, row, f"{100 * share:.0f}", ha="center", va="center",
                          fontsize="x-small", color=color)  # fmt: skip
    figure.colorbar(shown, ax=axis, format=PercentFormatter(1.0))
    axis.set_title("Confusion matrix, fine-tuned model (share of each actual class)")
    return figure


def rate_sweep_figure(sweep: RateSweepLike, param: str) -> Figure:
    """The learning-rate range test: loss against rate (log scale), each step and smoothed,
    with the suggested rate and the lowest point marked."""
    figure = Figure(figsize=(7, 4.2))
    axis = figure.subplots()
    axis.plot(sweep.rates, sweep.raw_losses, color="lightgrey", linewidth=0.8, label="each step")
    axis.plot(sweep.rates, sweep.losses, color="tab:blue", label="smoothed")
    at = np.searchsorted(sweep.rates, sweep.suggested)
    at = min(at, len(sweep.rates) - 1)
    axis.axvline(sweep.suggested, color="tab:green", linestyle="--",
                 label=f"suggested {param}: {sweep.suggested:.2g}")  # fmt: skip
    axis.plot([sweep.rates[at]], [sweep.losses[at]], "o", color="tab:green")
    axis.axvline(sweep.minimum, color="tab:red", linestyle=":",
                 label=f"lowest loss: {sweep.minimum:.2g}")  # fmt: skip
    axis.set_xscale("log")
    low, high = min(sweep.losses), max(sweep.losses[: max(3, len(sweep.losses) // 10)])
    axis.set_ylim(low - 0.1 * (high - low), high + 0.3 * (high - low))
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left", fontsize="small")
    axis.set_title(f"Learning-rate range test ({sweep.stopped})", fontsize="medium")
    return figure
