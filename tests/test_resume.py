"""The per-epoch backup: what a killed attempt leaves behind, and how training resumes from it."""

import json
import shutil

import keras
import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.model import build_model, compile_for_training
from src.finetune.resume import STATE_FILE, EpochBackup, fingerprint
from tests.test_model import brief_train, tiny_split


def fresh_model(lr: float = 1e-3) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model(weights=None, dropout=0.0, image_size=32)
    compile_for_training(model, lr)
    return model


def fit(model, backup, epochs, initial_epoch=0, seen=None):
    return brief_train(
        model,
        tiny_split(),
        tiny_split(seed=1),
        epochs=epochs,
        initial_epoch=initial_epoch,
        on_epoch_end=lambda epoch, logs: (seen if seen is not None else []).append(epoch),
        backup=backup,
    )


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A backup as a run killed after 2 of its 3 epochs (phase 2: epochs 6-8) leaves it."""
    directory = tmp_path_factory.mktemp("resume") / "backup"
    model = fresh_model()
    fit(model, EpochBackup(directory, "same", "phase2_finetune"), epochs=2, initial_epoch=5)
    return directory, model


def test_backup_holds_the_last_epoch_its_history_and_one_weights_file(interrupted):
    directory, _ = interrupted
    state = json.loads((directory / STATE_FILE).read_text())
    assert state["epoch"] == 7 and state["fingerprint"] == "same"
    assert [row["epoch"] for row in state["rows"]] == [6, 7]
    assert sorted(p.name for p in directory.iterdir()) == ["epoch-7.weights.h5", STATE_FILE]


def test_restore_brings_back_weights_and_optimizer_state(interrupted, caplog):
    directory, trained = interrupted
    model = fresh_model()
    caplog.set_level("INFO")
    resumed = EpochBackup(directory, "same", "phase2_finetune").restore(model)
    assert resumed.epoch == 7 and [row["epoch"] for row in resumed.rows] == [6, 7]
    assert "resuming phase2_finetune at epoch 8: epochs 6-7 restored" in caplog.text
    for ours, theirs in zip(model.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert int(model.optimizer.iterations) == int(trained.optimizer.iterations) > 0


@pytest.fixture
def directory(interrupted, tmp_path):
    """A copy of the interrupted run's backup, for a test to resume from or discard."""
    copy = tmp_path / "backup"
    shutil.copytree(interrupted[0], copy)
    return copy


def test_resumed_training_runs_only_the_missing_epochs_and_lists_each_once(directory):
    seen: list[int] = []
    history = fit(fresh_model(), EpochBackup(directory, "same", "phase2_finetune"), 3, 5, seen=seen)
    assert history["epoch"].tolist() == [6, 7, 8]
    assert seen == [6, 7, 8], "restored epochs are reported again for the new attempt's run"
    assert json.loads((directory / STATE_FILE).read_text())["epoch"] == 8


def test_backup_of_other_params_or_inputs_is_discarded(directory):
    resumed = EpochBackup(directory, "other", "phase2_finetune").restore(fresh_model())
    assert resumed.epoch == 0 and not directory.exists()


def test_weights_without_a_committed_state_are_an_unfinished_backup(tmp_path):
    directory = tmp_path / "backup"
    directory.mkdir()
    (directory / "epoch-1.weights.h5").write_bytes(b"half written")
    assert EpochBackup(directory, "same", "phase1_extract").restore(fresh_model()).epoch == 0
    assert not directory.exists()


def test_all_epochs_backed_up_but_model_not_saved_trains_nothing_more(interrupted, directory):
    _, trained = interrupted
    model = fresh_model()
    history = fit(model, EpochBackup(directory, "same", "phase2_finetune"), 2, 5)
    assert history["epoch"].tolist() == [6, 7]
    for ours, theirs in zip(model.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_diverged_training_leaves_no_backup_to_resume_from(tmp_path):
    directory = tmp_path / "backup"
    with pytest.raises(PipelineError, match=r"lower phase1\.lr"):
        fit(fresh_model(lr=1e38), EpochBackup(directory, "same", "phase1_extract"), 2)
    assert not directory.exists()


def test_fingerprint_follows_params_and_input_content(tmp_path):
    data = tmp_path / "train.npz"
    data.write_bytes(b"a")
    first = fingerprint({"phase2.lr": 1e-5}, [data])
    assert fingerprint({"phase2.lr": 1e-5}, [data]) == first
    assert fingerprint({"phase2.lr": 1e-4}, [data]) != first
    data.write_bytes(b"b")
    assert fingerprint({"phase2.lr": 1e-5}, [data]) != first
