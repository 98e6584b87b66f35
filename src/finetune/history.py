"""Per-epoch history files: one row per global epoch, the same columns in both phases."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from src.finetune.errors import PipelineError

HISTORY_COLUMNS = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]


def history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """One row per epoch, numbered from 1 and continuing across phases (16..25 for phase 2)."""
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
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
