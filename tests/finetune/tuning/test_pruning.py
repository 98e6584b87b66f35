"""The training stage's side of a study: it reports each epoch of the last phase and stops,
in one line, when the study's pruner says so."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from src.finetune.environment import PRUNED_AT, STOPPED_BECAUSE, StudyTrial
from src.finetune.errors import Pruned
from src.finetune.params import Phase
from src.finetune.tuning.pruning import StudyPruning, open_trial, trial_callbacks
from src.finetune.tuning.space import SearchSpace
from src.finetune.tuning.study import open_study

LR = {"phase2.lr": FloatDistribution(1e-5, 1e-2, log=True)}


@pytest.fixture
def study(tmp_path) -> tuple[optuna.Study, str]:
    """A median-pruned study (4 trials: it compares after one) with one finished trial that
    reached 0.8 at every epoch, and a running trial."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = SearchSpace.model_validate(
        {"trials": 4, "space": {"phase2.lr": {"low": 1e-5, "high": 1e-2, "log": True}}}
    )
    study = open_study(space, "lr", storage)
    study.add_trial(
        create_trial(
            params={"phase2.lr": 1e-3}, distributions=LR, value=0.8,
            intermediate_values={1: 0.8, 2: 0.8, 3: 0.8},
        )
    )  # fmt: skip
    return study, storage


def test_a_trial_that_trails_the_median_stops_after_that_epoch_in_one_line(study):
    study, storage = study
    running = study.ask({"phase2.lr": LR["phase2.lr"]})
    trial = open_trial(StudyTrial(storage, "lr", running.number))  # as the stage opens it
    callback = StudyPruning(trial, "val_accuracy", initial_epoch=15)  # phase 1 ran 15 epochs
    with pytest.raises(Pruned) as stopped:  # global epoch 16, the phase's first
        callback.on_epoch_end(15, {"val_accuracy": 0.2})
    assert str(stopped.value) == (
        f"trial {running.number} of the tuning study stopped after epoch 16: its validation "
        "metric trails the other trials'"
    )
    stored = study.trials[running.number]
    assert stored.intermediate_values == {1: 0.2}  # steps count the phase's epochs
    assert stored.user_attrs[PRUNED_AT] == 16 and stored.state == TrialState.RUNNING


def test_a_trial_ahead_of_the_median_goes_on(study):
    study, storage = study
    running = study.ask({"phase2.lr": LR["phase2.lr"]})
    callback = StudyPruning(
        open_trial(StudyTrial(storage, "lr", running.number)), "val_accuracy", 0
    )
    for epoch in range(3):
        callback.on_epoch_end(epoch, {"val_accuracy": 0.85})
    assert study.trials[running.number].intermediate_values == {1: 0.85, 2: 0.85, 3: 0.85}


def test_a_trial_whose_loss_does_not_fall_stops_after_three_epochs_and_says_why(study):
    """At a rate far too high a network stays at chance: 2.30 at every epoch. The pruner
    cannot tell (no other trial at that epoch), the callback can."""
    study, storage = study
    running = study.ask({"phase2.lr": LR["phase2.lr"]})
    callback = StudyPruning(open_trial(StudyTrial(storage, "lr", running.number)), "val_accuracy",
                            initial_epoch=5)  # fmt: skip
    callback.on_epoch_end(5, {"val_accuracy": 0.9, "loss": 2.302})
    callback.on_epoch_end(6, {"val_accuracy": 0.9, "loss": 2.309})
    with pytest.raises(Pruned) as stopped:
        callback.on_epoch_end(7, {"val_accuracy": 0.9, "loss": 2.300})
    why = (
        "it does not learn: its training loss is 2.3000 after 3 epochs, 2.3020 after the "
        "first (is the learning rate too high?)"
    )
    assert str(stopped.value).endswith(f"stopped after epoch 8: {why}")
    assert study.trials[running.number].user_attrs[STOPPED_BECAUSE] == why


def test_a_trial_whose_loss_falls_goes_on_and_one_not_finite_stops(study):
    study, storage = study
    running = study.ask({"phase2.lr": LR["phase2.lr"]})
    callback = StudyPruning(open_trial(StudyTrial(storage, "lr", running.number)), "val_accuracy",
                            initial_epoch=0)  # fmt: skip
    for epoch, loss in enumerate((1.0, 0.995, 0.98, 0.97)):
        callback.on_epoch_end(epoch, {"val_accuracy": 0.9, "loss": loss})
    with pytest.raises(Pruned, match="stopped after epoch 5: its training loss is nan"):
        callback.on_epoch_end(4, {"val_accuracy": 0.9, "loss": float("nan")})


def test_only_the_last_phase_of_a_tuning_trial_gets_the_callback(study, monkeypatch):
    study, storage = study
    running = study.ask({"phase2.lr": LR["phase2.lr"]})
    assert trial_callbacks(Phase.FINETUNE, 15) == []  # not a trial
    for name, value in StudyTrial(storage, "lr", running.number).environ().items():
        monkeypatch.setenv(name, value)
    assert trial_callbacks(Phase.EXTRACT, 0) == []
    (callback,) = trial_callbacks(Phase.FINETUNE, 15)
    assert isinstance(callback, StudyPruning) and callback.initial_epoch == 15
    assert callback._monitor == "val_accuracy" and callback.trial.number == running.number
    assert isinstance(callback.trial.study.pruner, optuna.pruners.MedianPruner)
