"""The training stage's side of a tuning study: each epoch's validation metric goes to the
trial, and the study's pruner may stop the phase there.

Optuna's own Keras callback reports and asks; this subclass says, in the trial, at which epoch
it stopped (``PRUNED_AT``) and why (``STOPPED_BECAUSE``), so the tuner tells a pruned trial
from a failed one, and turns Optuna's exception into the stage's one-line stop.

It also stops a trial that does not learn, whatever the pruner says: one whose training loss
has not fallen below its first epoch's after ``NOT_LEARNING_EPOCHS`` epochs (a rate far too
high leaves a network at chance for every epoch, reported "complete" before). Its remaining
epochs and stages would only cost time.
"""

from __future__ import annotations

import logging
import math

import keras
import optuna
from optuna_integration import KerasPruningCallback

from src.finetune.environment import PRUNED_AT, STOPPED_BECAUSE, StudyTrial, study_trial
from src.finetune.errors import Pruned
from src.finetune.params import Phase
from src.finetune.tuning.pruners import make_pruner

# The phase whose validation metric a study optimises: the last one.
REPORTING_PHASE = Phase.FINETUNE
NOT_LEARNING_EPOCHS = 3  # epochs of the phase after which a loss that has not fallen stops it
FALL = 0.99  # the loss must be below this share of the first epoch's by then
log = logging.getLogger(__name__)


class StudyPruning(KerasPruningCallback):
    """Reports ``monitor`` after each epoch and stops the phase, raising ``Pruned``, when the
    study's pruner says so. The step is the epoch within the phase (1, 2, ...): trials whose
    phase 1 ran longer still compare epoch for epoch."""

    def __init__(self, trial: optuna.Trial, monitor: str, initial_epoch: int) -> None:
        super().__init__(trial, monitor)
        self.trial = trial
        self.initial_epoch = initial_epoch
        self.first_loss: float | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        step = epoch - self.initial_epoch + 1
        try:
            super().on_epoch_end(step, logs)
        except optuna.TrialPruned:
            self._stop(epoch, "its validation metric trails the other trials'")
        if "loss" not in (logs or {}):
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self._stop(epoch, f"its training loss is {loss} (is the learning rate too high?)")
        if step == 1:
            self.first_loss = loss
        elif step >= NOT_LEARNING_EPOCHS and loss >= FALL * (self.first_loss or math.inf):
            self._stop(
                epoch,
                f"it does not learn: its training loss is {loss:.4f} after {step} epochs, "
                f"{self.first_loss:.4f} after the first (is the learning rate too high?)",
            )

    def _stop(self, epoch: int, why: str) -> None:
        self.trial.set_user_attr(PRUNED_AT, epoch + 1)
        self.trial.set_user_attr(STOPPED_BECAUSE, why)
        raise Pruned(
            f"trial {self.trial.number} of the tuning study stopped after epoch {epoch + 1}: {why}"
        ) from None


def open_trial(reference: StudyTrial) -> optuna.Trial:
    """The running trial ``reference`` names, from its study's storage."""
    study = optuna.load_study(study_name=reference.study, storage=reference.storage)
    study.pruner = make_pruner(*study.user_attrs["pruner"])
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(  # no public lookup
        study._study_id, reference.number
    )
    return optuna.Trial(study, trial_id)


def trial_callbacks(phase: Phase, initial_epoch: int) -> list[keras.callbacks.Callback]:
    """The pruning callback when this process trains the reporting phase of a tuning trial
    (the phase starting after ``initial_epoch`` epochs); nothing otherwise."""
    reference = study_trial()
    if reference is None or phase is not REPORTING_PHASE:
        return []
    trial = open_trial(reference)
    monitor = trial.study.user_attrs.get("metric", "val_accuracy")
    log.info("reporting %s to trial %d of study %s", monitor, trial.number, reference.study)
    return [StudyPruning(trial, monitor, initial_epoch)]
