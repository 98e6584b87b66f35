"""What both training stages do around the training core: log the phase's plan and each
epoch as it ends, resume after a kill, and write and record the phase's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from src.finetune.data import Split
from src.finetune.files import write_csv, write_json
from src.finetune.history import HISTORY_COLUMNS
from src.finetune.live_logging import MlflowEpochLogger
from src.finetune.model import save_model
from src.finetune.resume import EpochBackup
from src.finetune.tracking import StageTracker
from src.finetune.training import History, Plan, phase_groups, train


@dataclass(frozen=True)
class PhaseOutputs:
    model: Path
    history: Path
    summary: Path


def train_phase(
    model: keras.Model,
    data: tuple[Split, Split],
    plan: Plan,
    *,
    tracker: StageTracker,
    backup: EpochBackup,
    outputs: PhaseOutputs,
) -> History:
    """Train along ``plan``, logging live; then write the checkpoint, history and summary.

    The backup outlives a kill and is removed only once every output is written.
    """
    phase = int(plan.phase[-1])
    tracker.log_params(
        {f"{plan.phase}.lr.{group.name}": group.lr for group in phase_groups(model, plan)}
        | {
            f"{plan.phase}.unfreeze.{group.name}": group.first_epoch
            for group in phase_groups(model, plan)
        }
    )
    for row in backup.completed().rows:  # a killed attempt's epochs, for this attempt's run
        metrics = {key: value for key, value in row.items() if key != "epoch"}
        tracker.log_epoch(int(row["epoch"]), metrics | {"phase": float(phase)})
    history = train(model, data, plan, callbacks=[MlflowEpochLogger(tracker, phase)], backup=backup)

    save_model(model, outputs.model)
    write_csv(outputs.history, history.frame[HISTORY_COLUMNS])
    write_json(outputs.summary, history.summary())
    backup.discard()
    tracker.log_epoch(history.kept_epoch, {"kept": 1.0})
    tracker.log_results(
        {
            f"{plan.phase}.kept_epoch": history.kept_epoch,
            f"{plan.phase}.stopped_early": float(history.stopped_early),
        }
    )
    tracker.record_outputs(outputs.model, outputs.history, outputs.summary)
    tracker.log_artifacts(outputs.history, outputs.summary)
    return history
