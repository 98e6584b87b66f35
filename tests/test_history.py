import pandas as pd
import pytest

from src.finetune.errors import PipelineError
from src.finetune.history import HISTORY_COLUMNS, combined_history, history_frame, read_history


def frame(first: int, n: int) -> pd.DataFrame:
    rows = [{"epoch": first + i, **{c: 0.1 * i for c in HISTORY_COLUMNS[1:]}} for i in range(n)]
    return history_frame(rows)


def test_history_has_the_fixed_columns_whatever_keras_logged():
    rows = [{"epoch": 16, "loss": 1.0, "val_loss": 1.2, "learning_rate": 1e-5}]
    phase2 = history_frame(rows)
    assert list(phase2.columns) == HISTORY_COLUMNS
    assert phase2["epoch"].tolist() == [16] and phase2["accuracy"].isna().all()


def test_combined_history_marks_phases_and_rejects_gaps():
    both = combined_history(frame(1, 15), frame(16, 10))
    assert both["epoch"].tolist() == list(range(1, 26))
    assert both["phase"].tolist() == [1] * 15 + [2] * 10
    with pytest.raises(PipelineError, match="starts at epoch 17, expected 16"):
        combined_history(frame(1, 15), frame(17, 9))


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
