"""The per-epoch backup: what a killed attempt leaves behind, and how training resumes from it."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from src.finetune.data.splits import Split
from src.finetune.errors import PipelineError
from src.finetune.training import resume as resume_module
from src.finetune.training.resume import STATE_FILE, EpochBackup, fingerprint
from tests.support.bombs import npy_head, peak_memory, write_zip_bomb
from tests.support.training import (
    TOP,
    augment,
    brief_train,
    fresh_model,
    learnable_split,
)

PHASE2 = {"phase": "phase2", "initial_epoch": 5, "unfreeze_last": 40}


class Killed(Exception):
    """What a SIGKILL would do to the stage, raised once the given epoch is backed up."""


def kill_after(epoch: int) -> keras.callbacks.Callback:
    def stop(index, logs=None):
        if index + 1 == epoch:
            raise Killed

    return keras.callbacks.LambdaCallback(on_epoch_end=stop)


def fit(model, backup, epochs, seen=None, **plan):
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: (seen if seen is not None else []).append(epoch + 1)
    )
    return brief_train(model, callbacks=(recorder,), backup=backup, epochs=epochs, **plan)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A backup as a phase 2 killed after 2 of its 3 epochs (6-8) leaves it, and the model."""
    directory = tmp_path_factory.mktemp("resume") / "backup"
    model = fresh_model()
    with pytest.raises(Killed):
        brief_train(
            model,
            callbacks=(kill_after(7),),
            backup=EpochBackup(directory, "same", "phase2_finetune"),
            epochs=3,
            **PHASE2,
        )
    return directory, model


def test_backup_holds_the_last_epoch_its_history_and_one_weights_file(interrupted):
    directory, _ = interrupted
    state = json.loads((directory / STATE_FILE).read_text())
    assert state["epoch"] == 7 and state["fingerprint"] == "same"
    assert [row["epoch"] for row in state["rows"]] == [6, 7]
    assert sorted(p.name for p in directory.iterdir()) == ["epoch-7.weights.h5", STATE_FILE]


@pytest.fixture
def directory(interrupted, tmp_path):
    """A copy of the interrupted run's backup, for a test to resume from or discard."""
    copy = tmp_path / "backup"
    shutil.copytree(interrupted[0], copy)
    return copy


def test_resumed_training_runs_only_the_missing_epochs_and_lists_each_once(
    directory, interrupted, caplog
):
    caplog.set_level("INFO")
    seen: list[int] = []
    model = fresh_model()
    history = fit(model, EpochBackup(directory, "same", "phase2_finetune"), 3, seen, **PHASE2)
    assert "resuming phase2_finetune at epoch 8: epochs 6-7 restored" in caplog.text
    assert history.frame["epoch"].tolist() == [6, 7, 8]
    assert seen == [8], "only the missing epoch trains"
    assert json.loads((directory / STATE_FILE).read_text())["epoch"] == 8
    # the restored optimizer went on: epochs 6-8 of 20 images in batches of 10
    assert int(model.optimizer.iterations) == 6


def test_restore_brings_back_weights_and_optimizer_state(directory, interrupted):
    _, trained = interrupted
    model = fresh_model()
    history = fit(model, EpochBackup(directory, "same", "phase2_finetune"), 2, **PHASE2)
    assert history.frame["epoch"].tolist() == [6, 7], "all epochs were backed up: none trains"
    for ours, theirs in zip(model.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    mine, its = model.optimizer.variables, trained.optimizer.variables
    assert len(mine) == len(its) > 1, "the moments and the step count"
    for ours, theirs in zip(mine, its, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_backup_of_other_params_or_inputs_is_discarded(directory):
    assert EpochBackup(directory, "other", "phase2_finetune").completed().epoch == 0
    assert not directory.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / STATE_FILE).write_text("{not json"),
        lambda d: (d / STATE_FILE).write_text('{"epoch": 7}'),
        lambda d: (d / "epoch-7.weights.h5").unlink(),
    ],
    ids=["state-not-json", "state-without-keys", "weights-missing"],
)
def test_an_unreadable_backup_is_discarded_like_a_stale_one(directory, damage):
    damage(directory)
    assert EpochBackup(directory, "same", "phase2_finetune").completed().epoch == 0
    assert not directory.exists()


def test_weights_that_cannot_be_loaded_stop_with_one_line_and_leave_no_backup(directory):
    (directory / "epoch-7.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(PipelineError, match=r"cannot be restored .* it was discarded"):
        fit(fresh_model(), EpochBackup(directory, "same", "phase2_finetune"), 3, **PHASE2)
    assert not directory.exists()


def test_a_huge_state_file_is_discarded_unread(directory, caplog):
    """300 MB of state (sparse on disk) is refused from its size, not read."""
    with (directory / STATE_FILE).open("r+b") as state:
        state.truncate(300_000_000)
    caplog.set_level("INFO")
    with peak_memory() as peak:
        assert EpochBackup(directory, "same", "phase2_finetune").completed().epoch == 0
    assert peak.bytes < 200_000_000, f"{peak.bytes / 1e6:.0f} MB taken to refuse it"
    assert "it cannot be read" in caplog.text and not directory.exists()


class _Stopping:
    """Early stopping's part of a backup, and the best weights it was handed back."""

    best_weights = None

    def state(self) -> dict:
        return {}

    def load_state(self, state, best_weights) -> None:
        self.best_weights = best_weights


def test_best_weights_that_inflate_far_are_refused_before_they_are_read(directory):
    """A best-weights .npz of 300 MB of zeros in 300 KB: NumPy would inflate it whole."""
    state = json.loads((directory / STATE_FILE).read_text())
    state |= {"stateful": {}, "best_weights": "best-7.npz"}
    (directory / STATE_FILE).write_text(json.dumps(state))
    count = 75_000_000
    bomb = write_zip_bomb(
        directory / "best-7.npz", "arr_0.npy", 128 + 4 * count, fill=b"\0", head=npy_head((count,))
    )
    backup = EpochBackup(directory, "same", "phase2_finetune")
    backup.follow(_Stopping())
    assert backup.completed().epoch == 7
    model = SimpleNamespace(  # the weights file is real: only the arrays are in question
        optimizer=SimpleNamespace(build=lambda variables: None),
        trainable_variables=[],
        load_weights=lambda path: None,
    )
    with peak_memory() as peak, pytest.raises(PipelineError) as refused:
        backup.restore(model)
    assert peak.bytes < 200_000_000, f"{peak.bytes / 1e6:.0f} MB taken to refuse it"
    assert re.fullmatch(
        rf"{bomb}: arr_0\.npy inflates to 300 MB from [\d.]+ KB, a compression no model file "
        "has; it was not read: it was discarded: run the stage again to train phase2_finetune "
        "from its start",
        str(refused.value),
    )
    assert not directory.exists()


def test_a_weights_file_larger_than_any_model_is_refused_unread(directory, monkeypatch):
    monkeypatch.setattr(resume_module, "LARGE_MEMBER", 1000)
    with pytest.raises(PipelineError, match=r"epoch-7\.weights\.h5 is [\d.]+ [KM]B, more than "
                       r"the 1\.0 KB it may hold; it was not read: it was discarded"):  # fmt: skip
        fit(fresh_model(), EpochBackup(directory, "same", "phase2_finetune"), 3, **PHASE2)
    assert not directory.exists()


def test_weights_without_a_committed_state_are_an_unfinished_backup(tmp_path):
    directory = tmp_path / "backup"
    directory.mkdir()
    (directory / "epoch-1.weights.h5").write_bytes(b"half written")
    assert EpochBackup(directory, "same", "phase1_extract").completed().epoch == 0
    assert not directory.exists()


def test_diverged_training_leaves_no_backup_to_resume_from(tmp_path):
    directory = tmp_path / "backup"
    with pytest.raises(PipelineError, match=r"lower phase1\.lr"):
        fit(fresh_model(), EpochBackup(directory, "same", "phase1_extract"), 2, lr=1e38)
    assert not directory.exists()


def test_fingerprint_follows_params_and_input_content(tmp_path):
    data = tmp_path / "train.npz"
    data.write_bytes(b"a")
    first = fingerprint({"phase2.lr": 1e-5}, [data])
    assert fingerprint({"phase2.lr": 1e-5}, [data]) == first
    assert fingerprint({"phase2.lr": 1e-4}, [data]) != first
    data.write_bytes(b"b")
    assert fingerprint({"phase2.lr": 1e-5}, [data]) != first


class Watch(keras.callbacks.Callback):
    """Per epoch: the trainable layers, each group's rate and schedule step at its start."""

    def __init__(self, network):
        super().__init__()
        self.network, self.epochs = network, {}

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        groups = optimizer.optimizers if hasattr(optimizer, "optimizers") else [optimizer]
        self.epochs[epoch + 1] = {
            "trainable": sorted(w.path for w in self.network.trainable_weights),
            "rates": [float(o.learning_rate) for o in groups],
            "steps": [int(o.iterations) for o in groups],
        }


EVERYTHING = {
    **PHASE2,
    "lr": 0.01,
    "epochs": 4,
    "unfreeze_last": TOP + 4,  # block3 with the top, and 4 layers of block2: two groups
    "unfreeze_every": 2,
    "lr_decay": 0.5,
    "optimizer": "adamw",
    "weight_decay": 0.05,
    "schedule": "cosine",
    "warmup_epochs": 1,
    "label_smoothing": 0.1,
    "early_stopping": 3,
    "augment": augment(flip=True, crop_pad=2),
    "cache": True,
    "cache_budget_gb": 1.0,
    "cached_views": 2,
}


def test_a_resumed_phase_picks_up_schedule_groups_unfreezing_and_early_stopping(tmp_path):
    """Killed after epoch 7 of 6-9 (the first unfreezing step ends at 7), then resumed.

    Validation labels are the training images' shifted by five classes (of ten ordered by
    brightness), so validation loss rises from the first epoch on: early stopping (patience
    3) must stop after epoch 9 and keep epoch 6, which only an early-stopping state carried
    across the kill can know.
    """
    images = learnable_split(n=20)
    splits = (images, Split(images.images, (images.labels + 5) % 10, 10))

    def run(backup, *callbacks):
        return brief_train(
            callbacks[0].network if isinstance(callbacks[0], Watch) else fresh_model(),
            splits,
            callbacks=callbacks,
            backup=EpochBackup(tmp_path / backup, "x", "p"),
            **EVERYTHING,
        )

    whole = Watch(fresh_model())
    uninterrupted = run("a", whole)
    with pytest.raises(Killed):
        run("b", kill_after(7))
    resumed = Watch(fresh_model())
    history = run("b", resumed)
    assert uninterrupted.stopped_early and history.stopped_early
    assert uninterrupted.kept_epoch == history.kept_epoch == 6
    assert sorted(resumed.epochs) == [8, 9]
    for epoch in (8, 9):
        ours, theirs = resumed.epochs[epoch], whole.epochs[epoch]
        assert ours["trainable"] == theirs["trainable"], "same unfreezing step"
        assert ours["steps"] == theirs["steps"], "each group at the same schedule step"
        assert ours["rates"] == pytest.approx(theirs["rates"]), "and at the same rates"
    assert len(whole.epochs[8]["rates"]) == 2, "block2 joined at epoch 8"
    steps = resumed.epochs[8]["steps"]
    assert steps[0] == steps[1] == 2 * 2, "it joins at the phase's step: 2 epochs of 2 batches"
    state = {d: json.loads((tmp_path / d / STATE_FILE).read_text()) for d in ("a", "b")}
    assert state["b"]["epoch"] == state["a"]["epoch"] == 9
    assert set(state["b"]["stateful"]) == {"wait", "best", "best_epoch", "stopped_epoch"}
    assert [row["epoch"] for row in state["b"]["rows"]] == [6, 7, 8, 9]
    assert state["b"]["rows"][:2] == state["a"]["rows"][:2], "epochs 6-7 restored as they were"
    rows = state["b"]["rows"]
    best = min(rows, key=lambda row: row["val_loss"])
    stopping = state["b"]["stateful"]
    assert (stopping["best_epoch"] + 1, stopping["best"]) == (best["epoch"], best["val_loss"])
    assert stopping["wait"] == 9 - best["epoch"], "patience used counts across the kill"


def test_a_backup_is_valid_only_for_the_code_that_made_it(tmp_path):
    """Changing a source file between a kill and the resume discards the backup."""
    from src.finetune.environment import project_sources

    sources = project_sources()
    assert Path(resume_module.__file__).resolve() in sources
    assert all(p.suffix == ".py" and "src" in p.parts for p in sources)
    code = tmp_path / "loop.py"
    code.write_text("LR = 1\n")
    before = fingerprint({"phase1.lr": 0.1}, [], [code])
    assert fingerprint({"phase1.lr": 0.1}, [], [code]) == before
    code.write_text("LR = 2\n")
    assert fingerprint({"phase1.lr": 0.1}, [], [code]) != before


def test_a_backup_is_valid_only_for_the_libraries_that_made_it(tmp_path, monkeypatch):
    """Upgrading Keras between a kill and the resume discards the backup."""
    before = fingerprint({"phase1.lr": 0.1}, [])
    assert set(resume_module.library_versions()) == {"keras", "tensorflow", "numpy"}
    installed = resume_module.metadata.version
    monkeypatch.setattr(
        resume_module.metadata,
        "version",
        lambda name: "99.0" if name == "keras" else installed(name),
    )
    assert fingerprint({"phase1.lr": 0.1}, []) != before
