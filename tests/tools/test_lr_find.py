"""`python -m src.lr_find`: the learning-rate range test of a phase, on the prepared data and
phase 1's checkpoint as the stages left them; it writes its figure and JSON and nothing else."""

import json
import shutil

import pytest

from src import lr_find
from src.finetune.errors import PipelineError

# The local MLflow store the tracker logs the sweep to (a run named lr_find).
TRACKER_STORE = {"mlartifacts", "mlflow.db", "mlflow.db-shm", "mlflow.db-wal", "mlflow.db.lock"}


@pytest.fixture
def project(pipeline, workdir):
    """A working directory holding the pipeline's params, prepared data and phase-1 model."""
    shutil.copy(pipeline / "params.yaml", workdir / "params.yaml")
    shutil.copytree(pipeline / "data/prepared", workdir / "data/prepared")
    (workdir / "models").mkdir()
    shutil.copy(pipeline / "models/phase1.keras", workdir / "models/phase1.keras")
    return workdir


@pytest.mark.parametrize("phase", ["phase1", "phase2"])
def test_the_sweep_writes_its_figure_and_json_and_prints_the_rate_to_try(project, capsys, phase):
    """The sweep, its figure and the rate to try; the tracker's run; no weights changed."""
    before = (project / "models/phase1.keras").read_bytes()
    lr_find.main(["--phase", phase, "--steps", "12", "--start", "1e-5", "--end", "1e-1"])
    out = capsys.readouterr().out
    folder = project / "reports/lr_find"
    assert sorted(p.name for p in folder.iterdir()) == [f"{phase}.json", f"{phase}.png"]
    summary = json.loads((folder / f"{phase}.json").read_text())
    assert summary["phase"] == phase
    rates = summary["rates"]
    assert 2 <= len(rates) <= 12 and rates == sorted(rates)
    assert rates[0] >= 1e-5 and rates[-1] <= 1e-1
    assert len(summary["losses"]) == len(summary["raw_losses"]) == len(rates)
    assert rates[0] <= summary["suggested"] <= rates[-1]
    assert f"dvc exp run -S {phase}.lr={summary['suggested']:.2g}" in out
    assert (project / "models/phase1.keras").read_bytes() == before, "no weights change"
    assert [p.name for p in (project / "reports").iterdir()] == ["lr_find"]
    assert {p.name for p in project.iterdir()} - TRACKER_STORE == {
        "data", "models", "params.yaml", "reports",
    }  # fmt: skip


def test_phase2_without_phase1s_checkpoint_says_which_stage_to_run(project):
    (project / "models/phase1.keras").unlink()
    with pytest.raises(PipelineError, match=r"models/phase1.keras not found.*phase1_extract"):
        lr_find.main(["--steps", "12"])
    assert not (project / "reports/lr_find").exists()


@pytest.mark.parametrize("arguments", [["--steps", "5"], ["--start", "1", "--end", "0.1"]])
def test_a_sweep_that_cannot_run_is_refused_before_any_work(project, capsys, arguments):
    with pytest.raises(SystemExit) as stopped:
        lr_find.main(arguments)
    assert stopped.value.code == 2
    assert "give --steps 10 or more and 0 < --start < --end" in capsys.readouterr().err
    assert not (project / "reports").exists()
