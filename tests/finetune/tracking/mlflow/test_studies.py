"""A tuning study in MLflow: one run per study, each trial's comparison run nested under it
and tagged with its state, the best trial and the files on the study's run."""

import pytest
from mlflow.tracking import MlflowClient

from src.finetune import environment
from src.finetune.environment import StudyTrial
from src.finetune.errors import Pruned
from src.finetune.tracking import track_stage
from src.finetune.tracking.mlflow.runs import TAG_STUDY, TAG_TRIAL, TAG_TRIAL_STATE
from src.finetune.tracking.mlflow.store import tracking_uri
from src.finetune.tracking.mlflow.studies import open_study
from src.finetune.tracking.studies import RecordingStudyTracker, SafeStudyTracker
from tests.support.params import project_params


@pytest.fixture
def params():
    return project_params()


def run_trial(params, monkeypatch, study_run: str, number: int, pruned: bool) -> None:
    """Two stages of one trial's pipeline, as `python -m src.tune` starts them."""
    trial = StudyTrial("sqlite:///optuna.db", "lr", number, study_run)
    for name, value in trial.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DVC_EXP_NAME", f"lr-{number}")
    monkeypatch.setattr(environment, "execution_id", lambda: f"dvc-process-{number}")
    with track_stage("prepare", params, ("seed",)):
        pass
    if pruned:
        with pytest.raises(Pruned), track_stage("phase2_finetune", params, ("phase2",)):
            raise Pruned("trial pruned after epoch 2")
    else:
        with track_stage("phase2_finetune", params, ("phase2",)):
            pass


def test_trials_nest_under_the_study_run_tagged_with_their_state(workdir, params, monkeypatch):
    tracker = open_study(params.mlflow_experiment, "lr")
    assert open_study(params.mlflow_experiment, "lr").run_id == tracker.run_id
    run_trial(params, monkeypatch, tracker.run_id, 0, pruned=False)
    tracker.trial_finished(0, "complete")
    run_trial(params, monkeypatch, tracker.run_id, 1, pruned=True)
    tracker.trial_finished(1, "pruned")
    (workdir / "lr.json").write_text("{}")
    tracker.study_finished(
        {"metric": "val_accuracy", "space.phase2.lr": '{"low": 1e-05}'},
        {"phase2.lr": 0.001},
        {"best_val_accuracy": 0.8, "trials_pruned": 1.0},
        [workdir / "lr.json"],
    )

    client = MlflowClient(tracking_uri())
    study = client.get_run(tracker.run_id)
    assert study.info.run_name == "lr" and study.info.status == "FINISHED"
    assert study.data.metrics == {"best_val_accuracy": 0.8, "trials_pruned": 1.0}
    assert study.data.params["space.phase2.lr"] == '{"low": 1e-05}'
    assert study.data.tags["best.phase2.lr"] == "0.001"
    assert "phase2.lr=0.001" in study.data.tags["mlflow.note.content"]
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["lr.json"]
    experiment = client.get_experiment_by_name(params.mlflow_experiment)
    for number, state, status in ((0, "complete", "FINISHED"), (1, "pruned", "KILLED")):
        trial_runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{TAG_TRIAL}` = '{number}'"
        )
        assert len(trial_runs) == 3  # the comparison run and two stage runs
        for run in trial_runs:
            assert run.data.tags[TAG_STUDY] == "lr" and run.data.tags[TAG_TRIAL_STATE] == state
            assert run.info.status == ("FINISHED" if run.info.run_name == "prepare" else status)
        (comparison,) = [r for r in trial_runs if r.data.tags["pipeline.role"] == "comparison"]
        assert comparison.data.tags["mlflow.parentRunId"] == tracker.run_id
        assert comparison.info.run_name == f"lr-{number}"


def test_a_trial_killed_between_two_stages_ends_its_comparison_run_failed(
    workdir, params, monkeypatch
):
    tracker = open_study(params.mlflow_experiment, "lr")
    trial = StudyTrial("sqlite:///optuna.db", "lr", 2, tracker.run_id)
    for name, value in trial.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DVC_EXP_NAME", "lr-2")
    monkeypatch.setattr(environment, "execution_id", lambda: "dvc-process-2")
    with track_stage("prepare", params, ("seed",)):
        pass  # its worker is killed here, before the next stage reopens the comparison run
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(params.mlflow_experiment)
    query = f"tags.`{TAG_TRIAL}` = '2'"
    assert {r.info.status for r in client.search_runs([experiment.experiment_id], query)} == {
        "FINISHED"
    }
    tracker.trial_finished(2, "fail")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id], query)}
    assert runs["lr-2"].info.status == "FAILED"  # the execution never finished
    assert runs["prepare"].info.status == "FINISHED"  # the stage did
    assert {r.data.tags[TAG_TRIAL_STATE] for r in runs.values()} == {"fail"}


def test_a_failing_study_tracker_is_a_warning_and_the_study_goes_on(caplog):
    class Broken(RecordingStudyTracker):
        def trial_finished(self, number, state):
            raise ConnectionError("store gone")

    safe = SafeStudyTracker(Broken())
    safe.trial_finished(3, "complete")
    safe.study_finished({}, {}, {}, [])
    assert "tracking: trial_finished failed (store gone); the study goes on" in caplog.text
    assert safe.inner.calls == [("study_finished", ({}, {}, {}, []))]


def test_workers_that_each_made_a_study_run_keep_the_oldest(workdir, params):
    from src.finetune.tracking.mlflow.runs import TAG_ROLE, experiment_id_for

    client = MlflowClient(tracking_uri())
    experiment_id = experiment_id_for(client, params.mlflow_experiment)
    tags = {TAG_ROLE: "study", TAG_STUDY: "lr"}
    first = client.create_run(experiment_id, tags=tags).info.run_id
    client.create_run(experiment_id, tags=tags)  # a second machine, at the same moment
    assert open_study(params.mlflow_experiment, "lr").run_id == first
    alive = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_STUDY}` = 'lr'")
    assert [run.info.run_id for run in alive] == [first]
