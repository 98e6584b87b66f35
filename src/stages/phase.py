"""What both training stages do around the training core: log the phase's plan and each
epoch as it ends, resume after a kill, and write and record the phase's outputs."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras

from src.finetune.data.prepared import DataInfo
from src.finetune.data.splits import Split
from src.finetune.environment import project_sources
from src.finetune.errors import Pruned
from src.finetune.files import atomic_path
from src.finetune.model.checkpoints import weights_digest, write_checkpoint
from src.finetune.model.network import build_model
from src.finetune.params import Params
from src.finetune.tracking import SafeTracker
from src.finetune.tracking.keras import EpochLogger
from src.finetune.training.devices import Devices
from src.finetune.training.history import HISTORY_COLUMNS, History, write_summary
from src.finetune.training.loop import train
from src.finetune.training.plan import Plan
from src.finetune.training.resume import EpochBackup, fingerprint
from src.finetune.tuning.pruning import trial_callbacks
from src.stages.declaration import Stage, StagePaths

log = logging.getLogger(__name__)


def new_head_on_base(params: Params, info: DataInfo) -> keras.Model:
    """Phase 1's starting model: the backbone (weights per ``model.weights``) with a new head
    for the prepared data's image shape and classes; the learning-rate range test of phase 1
    starts from the same."""
    return build_model(
        params.backbone,
        params.model.keras_weights,
        params.model.dropout,
        params.data.image_size,
        info.image_shape,
        info.classes,
    )


@dataclass(frozen=True)
class PhaseRun:
    """Where a training stage works: its tracker (the chief's only), the paths this worker
    writes (its own outputs, or scratch ones) and its per-epoch backup."""

    tracker: SafeTracker
    paths: StagePaths
    backup: EpochBackup


def backup_for(stage: Stage, params: Params, paths: StagePaths) -> EpochBackup:
    """The stage's per-epoch backup, valid only for its params, the content of its inputs and
    the code it runs."""
    valid_for = fingerprint(params.select(stage.params), paths.inputs(), project_sources())
    return EpochBackup(paths.backup_dir, valid_for, stage.name)


@contextlib.contextmanager
def phase_run(
    stage: Stage, params: Params, paths: StagePaths, devices: Devices
) -> Iterator[PhaseRun]:
    """What a training stage works in: its tracked run, this worker's outputs and backup, and
    the distribution strategy's scope for building the model.

    Only the chief writes outputs and logs. Every other worker of a multi-worker cluster
    writes scratch files and a scratch backup dropped at the end, but still saves what the
    chief saves, when the chief saves it: Keras creates variables while saving, and under a
    multi-worker strategy that is a collective operation all workers must join. For the same
    reason a multi-worker phase never resumes: workers would restart from different epochs.

    The backup is removed only once the whole block succeeded: a stage stopped while it
    logs its model, after its outputs were written, resumes with nothing left to train.
    """
    backup = backup_for(stage, params, paths)
    with stage.tracked(params, paths, enabled=devices.chief) as tracker, devices.strategy.scope():
        if devices.chief:
            if devices.workers > 1 and backup.completed().epoch:
                log.info("a multi-worker phase starts from its first epoch: backup discarded")
                backup.discard()
            try:
                yield PhaseRun(tracker, paths, backup)
            except Pruned:  # a pruned trial is over: nothing to resume
                backup.discard()
                raise
            backup.discard()
            return
        with tempfile.TemporaryDirectory(prefix="worker-") as scratch:
            root = Path(scratch)
            scratch_paths = StagePaths(
                stage,
                paths.values
                | {name: root / Path(file.path).name for name, file in stage.outputs.items()},
            )
            yield PhaseRun(
                tracker, scratch_paths, EpochBackup(root / "backup", backup.fingerprint, stage.name)
            )


def train_phase(
    stage: Stage,
    model: keras.Model,
    data: tuple[Split, Split],
    plan: Plan,
    run: PhaseRun,
    class_names: tuple[str, ...],
) -> History:
    """Train along ``plan``, logging live; then write the checkpoint (with ``class_names``),
    history and summary."""
    tracker, paths, backup = run.tracker, run.paths, run.backup
    for row in backup.completed().rows:  # a killed attempt's epochs, for this attempt's run
        metrics = {key: value for key, value in row.items() if key != "epoch"}
        tracker.log_epoch(int(row["epoch"]), metrics | {"phase": float(plan.phase.number)})
    logger = EpochLogger(tracker, plan.phase.number)
    pruning = trial_callbacks(plan.phase, plan.initial_epoch)  # only in a tuning trial
    history = train(model, data, plan, callbacks=[logger, *pruning], backup=backup)
    tracker.log_params(
        {f"{plan.phase}.lr.{group.name}": group.lr for group in history.groups}
        | {f"{plan.phase}.unfreeze.{group.name}": group.first_epoch for group in history.groups}
    )

    log.info("trained weights: %s", weights_digest(model))
    # All three appear together or none does: a failed write (a full disk) leaves no output.
    with (
        atomic_path(paths.model) as model_path,
        atomic_path(paths.history) as history_path,
        atomic_path(paths.summary) as summary_path,
    ):
        write_checkpoint(model, model_path, class_names)
        history.frame[HISTORY_COLUMNS].to_csv(history_path, index=False)
        write_summary(summary_path, history.summary())
    tracker.log_epoch(history.kept_epoch, {"kept": 1.0})
    tracker.log_results(
        {
            f"{plan.phase}.kept_epoch": history.kept_epoch,
            f"{plan.phase}.stopped_early": float(history.stopped_early),
        }
    )
    stage.record(tracker, paths)
    return history
