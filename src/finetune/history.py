"""Per-epoch history files: one row per global epoch, the same columns in both phases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from src.finetune.errors import PipelineError

HISTORY_COLUMNS = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]


def history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """One row per epoch, numbered from 1 and continuing across phases (16..25 for phase 2),
    with the learning rate (``lr``) when the rows have it; the history file leaves it out."""
    columns = HISTORY_COLUMNS + (["lr"] if any("lr" in row for row in rows) else [])
    frame = pd.DataFrame(rows, columns=columns)
    frame["epoch"] = frame["epoch"].astype(int)
    return frame


def read_history(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the stage that writes it (`dvc repro`)")
    frame = pd.read_csv(path)
    if list(frame.columns) != HISTORY_COLUMNS or frame.empty:
        raise PipelineError(
            f"{path}: expected columns {', '.join(HISTORY_COLUMNS)} and at least one row; "
            "rerun the stage that writes it"
        )
    return frame


def combined_history(phase1: pd.DataFrame, phase2: pd.DataFrame) -> pd.DataFrame:
    """Both phases in one frame with a ``phase`` column; epochs must continue without a gap."""
    expected = int(phase1["epoch"].iloc[-1]) + 1
    if int(phase2["epoch"].iloc[0]) != expected:
        raise PipelineError(
            f"phase 2 history starts at epoch {int(phase2['epoch'].iloc[0])}, expected {expected}; "
            "rerun `dvc repro phase2_finetune`"
        )
    return pd.concat([phase1.assign(phase=1), phase2.assign(phase=2)], ignore_index=True)


SUMMARY_KEYS = ("phase", "first_epoch", "last_epoch", "kept_epoch", "stopped_early", "lr")


def read_summary(path: Path) -> dict[str, Any]:
    """A phase's summary (kept epoch, learning rates, inputs), as its training stage wrote it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the stage that writes it (`dvc repro`)")
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(
            f"{path} is not valid JSON ({error}); rerun the stage that writes it"
        ) from None
    missing = [key for key in SUMMARY_KEYS if not isinstance(summary, dict) or key not in summary]
    if missing:
        raise PipelineError(
            f"{path} lacks {', '.join(missing)}; rerun the stage that writes it (`dvc repro`)"
        )
    return summary


def with_learning_rates(history: pd.DataFrame, summaries: dict[int, dict]) -> pd.DataFrame:
    """The history with each epoch's learning rate, from the phase summaries."""
    rates = {int(epoch): rate for s in summaries.values() for epoch, rate in s["lr"].items()}
    return history.assign(lr=history["epoch"].map(rates).astype(float))


def kept_epochs(summaries: dict[int, dict]) -> dict[int, int]:
    """Phase -> the epoch whose weights the phase kept."""
    return {phase: int(summary["kept_epoch"]) for phase, summary in summaries.items()}
