"""What both training stages do around the training core: log the phase's plan and each
epoch as it ends, resume after a kill, and write and record the phase's outputs."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras

from src.finetune.data import Split
from src.finetune.devices import Devices
from src.finetune.files import atomic_path
from src.finetune.history import HISTORY_COLUMNS
from src.finetune.live_logging import MlflowEpochLogger
from src.finetune.model import weights_digest, write_checkpoint
from src.finetune.params import Params
from src.finetune.resume import EpochBackup
from src.finetune.tracking import StageTracker, track_stage
from src.finetune.training import History, Plan, phase_groups, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseOutputs:
    model: Path
    history: Path
    summary: Path


@contextlib.contextmanager
def outputs_of_this_worker(
    devices: Devices, outputs: PhaseOutputs, backup: EpochBackup
) -> Iterator[tuple[PhaseOutputs, EpochBackup]]:
    """The chief's outputs and backup; for any other worker of a multi-worker cluster,
    scratch files and a scratch backup dropped at the end: only the chief writes outputs.

    Every worker still saves what the chief saves, when the chief saves it: Keras creates
    variables while saving, and under a multi-worker strategy that is a collective operation
    all workers must join. For the same reason a multi-worker phase never resumes: workers
    would restart from different epochs.

    The backup is removed only once the whole block succeeded: a stage stopped while it
    logs its model, after its outputs were written, resumes with nothing left to train.
    """
    if devices.chief:
        if devices.workers > 1 and backup.completed().epoch:
            log.info("a multi-worker phase starts from its first epoch: backup discarded")
            backup.discard()
        yield outputs, backup
        backup.discard()
        return
    with tempfile.TemporaryDirectory(prefix="worker-") as scratch:
        root = Path(scratch)
        yield (
            PhaseOutputs(root / "model.keras", root / "history.csv", root / "summary.json"),
            EpochBackup(root / "backup", backup.fingerprint, backup.stage),
        )


@contextlib.contextmanager
def phase_run(
    stage: str,
    params: Params,
    logged_params: tuple[str, ...],
    devices: Devices,
    outputs: PhaseOutputs,
    backup: EpochBackup,
) -> Iterator[tuple[StageTracker, PhaseOutputs, EpochBackup]]:
    """What a training stage works in: its MLflow run (the chief's only), this worker's
    outputs and backup, and the distribution strategy's scope for building the model."""
    with (
        track_stage(stage, params, logged_params, enabled=devices.chief) as tracker,
        outputs_of_this_worker(devices, outputs, backup) as (outputs, backup),
        devices.strategy.scope(),
    ):
        yield tracker, outputs, backup


def train_phase(
    model: keras.Model,
    data: tuple[Split, Split],
    plan: Plan,
    *,
    tracker: StageTracker,
    backup: EpochBackup,
    outputs: PhaseOutputs,
) -> History:
    """Train along ``plan``, logging live; then write the checkpoint, history and summary."""
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

    log.info("trained weights: %s", weights_digest(model))
    # All three appear together or none does: a failed write (a full disk) leaves no output.
    with (
        atomic_path(outputs.model) as model_path,
        atomic_path(outputs.history) as history_path,
        atomic_path(outputs.summary) as summary_path,
    ):
        write_checkpoint(model, model_path)
        history.frame[HISTORY_COLUMNS].to_csv(history_path, index=False)
        summary_path.write_text(json.dumps(history.summary(), indent=2) + "\n")
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
