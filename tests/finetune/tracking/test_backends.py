"""One registry entry per tracker: every stage and tool opens its tracker through it, so a
second tracker is one module and one entry, and nothing else changes."""

import pytest

from src.finetune.tracking import TRACKERS, RecordingTracker, Status, backend, track_stage
from src.finetune.tracking.studies import RecordingStudyTracker
from tests.support.params import project_params
from tests.support.tracking import recording_backend


@pytest.fixture
def opened(monkeypatch, workdir):
    """The mlflow entry replaced by a recording one: what each tool opens lands here."""
    opened = []
    monkeypatch.setitem(TRACKERS, "mlflow", lambda: recording_backend(opened))
    return opened


def test_a_stage_opens_its_tracker_through_the_registry(opened, workdir):
    params = project_params()
    assert params.tracker == "mlflow"
    with track_stage("evaluate", params, ("evaluate",)) as tracker:
        tracker.log_results({"finetuned_accuracy": 0.9})
    (recorded,) = opened
    assert isinstance(recorded, RecordingTracker) and recorded.status == Status.FINISHED
    assert recorded.results == {"finetuned_accuracy": 0.9}
    assert not (workdir / "mlflow.db").exists(), "no MLflow store behind the stage's back"


def test_the_tools_open_theirs_through_it_too(opened, workdir):
    params = project_params()
    tracker = backend(params)
    assert isinstance(tracker.study(params, "lr"), RecordingStudyTracker)
    assert tracker.execution(params, "relog-1", "relog-1", None).logged_params == params.flat()
    assert tracker.workspace_env(workdir) == {"RECORDED_AT": str(workdir)}
    tracker.prepare(params)
    assert opened[-1] == ("prepared", "cifar10-finetune")
    assert not (workdir / "mlflow.db").exists()


def test_mlflow_runs_in_a_workspace_log_to_the_repositorys_store(workdir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow = backend(project_params())
    assert mlflow.workspace_env(workdir) == {
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"
    }
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert mlflow.workspace_env(workdir) == {"MLFLOW_TRACKING_URI": "http://team:5000"}
    assert mlflow.location() == "http://team:5000"
