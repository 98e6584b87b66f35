"""What a phase did: its ``History`` (one row per epoch it ran, the epoch it kept), the history
files (one row per global epoch, the same columns in both phases) and the typed ``Summary``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from src.finetune.environment import rerun
from src.finetune.errors import PipelineError, first_line
from src.finetune.files import SMALL_MEMBER, check_file_size, read_json
from src.finetune.numbers import Amount, Positive
from src.finetune.params import Phase

HISTORY_COLUMNS = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
# What each number of a history can be: accuracies are fractions; losses finite, not negative.
FRACTION = (0.0, 1.0, "an accuracy between 0 and 1")
LOSS = (0.0, 1e300, "a finite loss of 0 or more")
BOUNDS = {"accuracy": FRACTION, "val_accuracy": FRACTION, "loss": LOSS, "val_loss": LOSS}


def history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """One row per epoch, numbered from 1 and continuing across phases (16..25 for phase 2),
    with the learning rate (``lr``) when the rows have it; the history file leaves it out."""
    columns = HISTORY_COLUMNS + (["lr"] if any("lr" in row for row in rows) else [])
    frame = pd.DataFrame(rows, columns=columns)
    frame["epoch"] = frame["epoch"].astype(int)
    return frame


def read_history(path: Path) -> pd.DataFrame:
    """A history file as a training stage wrote it: the columns, at least one row, numbers,
    and epochs counting up one at a time; or one line saying what is wrong with it."""
    path = Path(path)
    fix = f"rerun the stage that writes it ({rerun('<stage>', force=True)})"
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the stage that writes it ({rerun()})")
    check_file_size(path, SMALL_MEMBER, fix)
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        reason = first_line(error, 100)
        raise PipelineError(f"{path} is not a readable CSV file ({reason}); {fix}") from None
    if list(frame.columns) != HISTORY_COLUMNS or frame.empty:
        raise PipelineError(
            f"{path}: expected columns {', '.join(HISTORY_COLUMNS)} and at least one row; {fix}"
        )
    numbers = frame.apply(pd.to_numeric, errors="coerce")
    if numbers["epoch"].isna().any() or numbers.drop(columns="epoch").isna().any().any():
        missing = frame.columns[(numbers.isna() & frame.notna()).any()].tolist()
        what = f"a value that is no number in {', '.join(missing)}" if missing else "an empty cell"
        raise PipelineError(f"{path} holds {what}; {fix}")
    epochs = numbers["epoch"]
    if (epochs % 1 != 0).any() or (epochs.diff().dropna() != 1).any():
        raise PipelineError(f"{path}: its epochs do not count up one at a time; {fix}")
    for column, (low, high, meaning) in BOUNDS.items():
        outside = numbers[~numbers[column].between(low, high)]
        if len(outside):
            value, epoch = outside[column].iloc[0], int(outside["epoch"].iloc[0])
            raise PipelineError(
                f"{path}: {column} is {value} at epoch {epoch}, not {meaning}; {fix}"
            )
    return numbers.astype({"epoch": int})


def combined_history(phase1: pd.DataFrame, phase2: pd.DataFrame) -> pd.DataFrame:
    """Both phases in one frame with a ``phase`` column; epochs must continue without a gap."""
    expected = int(phase1["epoch"].iloc[-1]) + 1
    if int(phase2["epoch"].iloc[0]) != expected:
        raise PipelineError(
            f"phase 2 history starts at epoch {int(phase2['epoch'].iloc[0])}, expected {expected}; "
            f"rerun {rerun('phase2_finetune')}"
        )
    return pd.concat(
        [phase1.assign(phase=Phase.EXTRACT.number), phase2.assign(phase=Phase.FINETUNE.number)],
        ignore_index=True,
    )


Epoch = Positive  # 1-based, global across phases


class Group(BaseModel):
    """A group of layers as a phase trains it: its peak rate and the epoch it starts."""

    model_config = ConfigDict(frozen=True)

    name: str
    lr: Amount
    first_epoch: Epoch | None  # 1-based global epoch; None: its turn never comes in this phase


class Summary(BaseModel):
    """What a phase's history file does not say: the kept epoch, every epoch's learning rate,
    each group's rate and first epoch, and how the training inputs were computed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Phase
    first_epoch: Epoch
    last_epoch: Epoch
    kept_epoch: Epoch
    stopped_early: bool
    inputs: str = ""
    groups: list[Group] = []
    lr: dict[Epoch, Amount | None]

    @model_validator(mode="after")
    def _epochs_agree(self) -> Summary:
        if not self.first_epoch <= self.kept_epoch <= self.last_epoch:
            raise ValueError("kept_epoch lies outside the phase's epochs")
        return self


def write_summary(path: Path, summary: Summary) -> None:
    """The summary as JSON, written in place (the caller renames it with the phase's other
    outputs)."""
    path.write_text(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")


def read_summary(path: Path) -> Summary:
    """A phase's summary (kept epoch, learning rates, inputs), as its training stage wrote it."""
    return read_json(path, Summary, f"rerun the stage that writes it ({rerun(force=True)})")


def with_learning_rates(history: pd.DataFrame, summaries: Mapping[Phase, Summary]) -> pd.DataFrame:
    """The history with each epoch's learning rate, from the phase summaries."""
    rates = {epoch: rate for summary in summaries.values() for epoch, rate in summary.lr.items()}
    return history.assign(lr=history["epoch"].map(rates).astype(float))


def kept_epochs(summaries: Mapping[Phase, Summary]) -> dict[Phase, int]:
    """Each phase's epoch whose weights it kept."""
    return {phase: summary.kept_epoch for phase, summary in summaries.items()}


@dataclass
class History:
    """What a phase did: one row per epoch it ran, and the epoch whose weights it kept."""

    phase: Phase
    frame: pd.DataFrame  # HISTORY_COLUMNS and the top group's learning rate, ``lr``
    kept_epoch: int
    stopped_early: bool
    groups: list[Group]
    inputs: str  # how the training inputs were computed: cached or streamed, and why

    def summary(self) -> Summary:
        """What the history file does not say: the kept epoch, the rates, the inputs."""
        epochs = self.frame["epoch"].astype(int)
        rates = self.frame["lr"] if "lr" in self.frame else [None] * len(epochs)
        return Summary(
            phase=self.phase,
            first_epoch=int(epochs.iloc[0]),
            last_epoch=int(epochs.iloc[-1]),
            kept_epoch=self.kept_epoch,
            stopped_early=self.stopped_early,
            inputs=self.inputs,
            groups=self.groups,
            lr={int(epoch): rate for epoch, rate in zip(epochs, rates, strict=True)},
        )
