import json
import os

import pytest

from src.finetune.errors import PipelineError
from src.finetune.params import Phase
from src.finetune.training.history import (
    HISTORY_COLUMNS,
    combined_history,
    history_frame,
    kept_epochs,
    read_history,
    read_summary,
    with_learning_rates,
)
from tests.support.training import frame


def test_history_has_the_fixed_columns_whatever_keras_logged():
    rows = [{"epoch": 16, "loss": 1.0, "val_loss": 1.2, "learning_rate": 1e-5}]
    phase2 = history_frame(rows)
    assert list(phase2.columns) == HISTORY_COLUMNS
    assert phase2["epoch"].tolist() == [16] and phase2["accuracy"].isna().all()
    with_rate = history_frame([{**rows[0], "lr": 1e-5}])
    assert list(with_rate.columns) == [*HISTORY_COLUMNS, "lr"]


def test_combined_history_marks_phases_and_rejects_gaps():
    both = combined_history(frame(1, 15), frame(16, 10))
    assert both["epoch"].tolist() == list(range(1, 26))
    assert both["phase"].tolist() == [1] * 15 + [2] * 10
    with pytest.raises(PipelineError, match="starts at epoch 17, expected 16"):
        combined_history(frame(1, 15), frame(17, 9))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is not a readable CSV file"),
        (b"\xff\xfe\x00junk", "is not a readable CSV file"),
        ("epoch,accuracy,loss,val_accuracy,val_loss\nx,0.5,1,0.5,1\n", "no number in epoch"),
        ("epoch,accuracy,loss,val_accuracy,val_loss\n1,abc,1,0.5,1\n", "no number in accuracy"),
        ("epoch,accuracy,loss,val_accuracy,val_loss\n,0.5,1,0.5,1\n", "an empty cell"),
        ("epoch,accuracy,loss,val_accuracy,val_loss\n1,.5,1,.5,1\n3,.5,1,.5,1\n", "one at a time"),
        (
            "epoch,accuracy,loss,val_accuracy,val_loss\n1,inf,1,.5,1\n",
            "accuracy is inf at epoch 1, not an accuracy between 0 and 1",
        ),
        ("epoch,accuracy,loss,val_accuracy,val_loss\n1,.5,1,1.5,1\n", "val_accuracy is 1.5 at"),
        (
            "epoch,accuracy,loss,val_accuracy,val_loss\n1,.5,-1,.5,1\n",
            "loss is -1 at epoch 1, not a finite loss of 0 or more",
        ),
        ("epoch,accuracy,loss,val_accuracy,val_loss\n1,.5,1,.5,nan\n", "an empty cell|val_loss is"),
    ],
)
def test_a_damaged_history_is_one_line(tmp_path, content, message):
    path = tmp_path / "phase1_history.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PipelineError, match=message):
        read_history(path)


def test_a_history_too_large_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "phase1_history.csv"
    path.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n1,.5,1,.5,1\n")
    os.truncate(path, 200_000_000)  # sparse: pandas would hold every byte
    with pytest.raises(PipelineError, match=r"is 200 MB, more than the 16 MB it may hold"):
        read_history(path)


def test_read_history_checks_columns(tmp_path):
    good = tmp_path / "h.csv"
    frame(1, 3).to_csv(good, index=False)
    assert read_history(good)["epoch"].tolist() == [1, 2, 3]
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,acc\n1,0.5\n")
    with pytest.raises(PipelineError, match="expected columns epoch, accuracy"):
        read_history(bad)
    with pytest.raises(PipelineError, match="not found"):
        read_history(tmp_path / "absent.csv")


SUMMARY = {
    "phase": "phase2",
    "first_epoch": 16,
    "last_epoch": 18,
    "kept_epoch": 17,
    "stopped_early": True,
    "lr": {"16": 1e-5, "17": 5e-6, "18": 0.0},
}


def test_summaries_give_each_epoch_its_rate_and_each_phase_its_kept_epoch(tmp_path):
    path = tmp_path / "phase2_summary.json"
    path.write_text(json.dumps(SUMMARY))
    summaries = {Phase.FINETUNE: read_summary(path)}
    history = with_learning_rates(frame(16, 3).assign(phase=2), summaries)
    assert history["lr"].tolist() == [1e-5, 5e-6, 0.0]
    assert kept_epochs(summaries) == {Phase.FINETUNE: 17}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        (json.dumps({k: v for k, v in SUMMARY.items() if k != "kept_epoch"}), "lacks kept_epoch"),
        ("[]", "is not a JSON object"),
        ("[" * 100_000, "is not valid JSON"),
        (json.dumps(SUMMARY | {"lr": [1, 2]}), "lr: input should be a valid dictionary"),
        (json.dumps(SUMMARY | {"lr": {"16": "fast"}}), r"lr\.16: input should be a valid number"),
        (json.dumps(SUMMARY | {"kept_epoch": "two"}), "kept_epoch: input should be a valid int"),
        (json.dumps(SUMMARY | {"kept_epoch": 99}), "kept_epoch lies outside the phase's epochs"),
        (json.dumps(SUMMARY | {"groups": [1, 2]}), "groups.0: input should be a valid dictionary"),
    ],
)
def test_a_damaged_summary_is_one_line(tmp_path, content, message):
    path = tmp_path / "phase2_summary.json"
    path.write_text(content)
    with pytest.raises(PipelineError, match=message):
        read_summary(path)
