"""MLflow as the tracker: one comparison run per execution with a run per stage nested in
it, lineage, logged models, and every failure a warning or one line."""

import os
import socket
import subprocess
import sys

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from src.finetune import environment
from src.finetune.errors import PipelineError
from src.finetune.evaluation.metrics import Metrics
from src.finetune.params import Phase, trained_part
from src.finetune.tracking import RecordingTracker, SafeTracker, track_stage
from src.finetune.tracking.mlflow.lineage import INPUT_TAG
from src.finetune.tracking.mlflow.runs import (
    TAG_EXECUTION,
    TAG_PROCESS,
    TAG_ROLE,
    close_orphaned_runs,
    experiment_id_for,
    headline,
    recipe,
)
from src.finetune.tracking.mlflow.series import fill_missing_steps
from src.finetune.tracking.mlflow.store import check_server, tracking_uri
from src.finetune.tracking.mlflow.tracker import MlflowTracker
from tests.support.params import ROOT, project_params
from tests.support.results import METRICS
from tests.support.training import frame


@pytest.fixture
def params():
    return project_params()


def runs(client, params):
    experiment = client.get_experiment_by_name(params.mlflow_experiment)
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_default_store_is_sqlite_at_the_dvc_root(workdir, monkeypatch):
    assert tracking_uri() == f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", "/srv/repo")
    assert tracking_uri() == "sqlite:////srv/repo/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"


def test_stage_runs_nest_under_one_comparison_run_per_execution(workdir, params):
    with track_stage("prepare", params, ("seed", "data.val_split")) as first:
        first.log_results({"train_images": 10})
    with track_stage("phase1_extract", params, ("phase1",)) as second:
        second.log_epoch(1, {"val_accuracy": 0.5, "val_loss": 1.0})
    assert first.inner.comparison_run_id == second.inner.comparison_run_id

    client = MlflowClient(tracking_uri())
    comparison, prepare, phase1 = runs(client, params)
    assert comparison.data.tags[TAG_ROLE] == "comparison"
    assert comparison.data.params["phase2.lr"] == "1e-05"
    assert comparison.data.params["data.train_limit"] == "null"
    assert len(comparison.data.params) == len(params.flat())
    assert prepare.data.params == {"seed": "42", "data.val_split": "0.1"}
    assert set(phase1.data.params) == {f"phase1.{key}" for key in params.phase1.model_fields}
    for stage in (prepare, phase1):
        assert stage.data.tags["mlflow.parentRunId"] == comparison.info.run_id
        assert stage.data.tags[TAG_EXECUTION] == comparison.data.tags[TAG_EXECUTION]
        assert stage.info.status == "FINISHED"
    assert comparison.info.status == "FINISHED"
    assert prepare.data.metrics == {"train_images": 10}
    assert phase1.data.metrics == {"val_accuracy": 0.5, "val_loss": 1.0}
    assert comparison.data.metrics == {}, "progress stays in the stage runs"


def test_the_comparison_run_lists_the_test_accuracies_first(workdir, params):
    """MLflow lists a run's metrics, and picks Compare's default parallel-coordinates axis, in
    the order they were first logged: the headline goes before sizes and curves."""
    history = frame(1, 2).assign(phase=1)
    metrics = Metrics(**METRICS)
    with track_stage("prepare", params, ()) as prepare:
        prepare.log_results({"train_images": 10, "val_images": 2})
    with track_stage("phase1_extract", params, ("phase1",)) as phase1:
        for _, row in history.iterrows():
            phase1.log_epoch(int(row["epoch"]), {"accuracy": row["accuracy"], "loss": row["loss"]})
        phase1.log_results({"phase1.kept_epoch": 2})
    with track_stage("evaluate", params, ()) as evaluate:
        evaluate.log_results(metrics.headline(), comparison=True)
    with track_stage("report", params, ()) as report:
        report.log_execution(history, {Phase.EXTRACT: 2}, metrics)

    client = MlflowClient(tracking_uri())
    (comparison,) = [r for r in runs(client, params) if r.data.tags[TAG_ROLE] == "comparison"]
    listed = list(client.get_run(comparison.info.run_id).data.metrics)
    assert listed[:3] == ["finetuned_accuracy", "finetuned_loss", "finetuned_accuracy_ci_low"]
    assert (
        listed.index("baseline_accuracy")
        < listed.index("accuracy_delta")
        < listed.index("accuracy")
    )
    assert "train_images" not in listed and "phase1.kept_epoch" not in listed
    curve = client.get_metric_history(comparison.info.run_id, "accuracy")
    assert [(m.step, m.value) for m in curve] == [(1, 0.0), (2, 0.1)]


def test_failing_stage_marks_its_runs_failed(workdir, params):
    with pytest.raises(RuntimeError), track_stage("evaluate", params, ()):
        raise RuntimeError("boom")
    statuses = {
        run.info.run_name: run.info.status for run in runs(MlflowClient(tracking_uri()), params)
    }
    assert statuses["evaluate"] == "FAILED"
    assert set(statuses.values()) == {"FAILED"}


def test_a_stage_run_that_cannot_be_created_closes_the_comparison_run(workdir, params, monkeypatch):
    create_run = MlflowClient.create_run

    def refuse_stage_runs(self, experiment_id, *args, **kwargs):
        if kwargs.get("run_name") == "evaluate":
            raise MlflowException("the store refused the run")
        return create_run(self, experiment_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_run", refuse_stage_runs)
    with (
        pytest.raises(PipelineError, match="the store refused the run"),
        track_stage("evaluate", params, ()),
    ):
        pass
    statuses = [run.info.status for run in runs(MlflowClient(tracking_uri()), params)]
    assert statuses == ["FAILED"]


def test_a_tracking_call_that_fails_in_any_way_is_a_warning(workdir, params, caplog, monkeypatch):
    with track_stage("evaluate", params, ()) as tracker:
        with monkeypatch.context() as patch:
            patch.setattr(tracker.inner, "log_params", lambda _: __import__("boto3_not_installed"))
            tracker.log_params({"x": 1})
        tracker.log_results({"after": 1.0})
    assert "MLflow: log params failed (No module named" in caplog.text
    (run,) = [
        r for r in runs(MlflowClient(tracking_uri()), params) if r.info.run_name == "evaluate"
    ]
    assert run.data.metrics["after"] == 1.0 and run.info.status == "FINISHED"


def test_the_comparison_run_says_what_it_trains_then_how_it_did(workdir, params):
    with track_stage("prepare", params, ("seed",)):
        pass
    client = MlflowClient(tracking_uri())
    (comparison, _) = runs(client, params)
    note = comparison.data.tags[MLFLOW_RUN_NOTE]
    assert note == recipe(params) and "EfficientNetV2B0 (ImageNet weights)" in note
    assert f"phase 2 {trained_part(40)} for 10 more at lr 1e-05" in note
    with track_stage("report", params, ("seed",)) as report:
        for accuracy in (0.9, 0.85):  # a second report replaces the headline
            metrics = Metrics(**METRICS | {"finetuned_accuracy": accuracy})
            report.log_execution(frame(1, 2).assign(phase=1), {Phase.EXTRACT: 2}, metrics)
    note = client.get_run(comparison.info.run_id).data.tags[MLFLOW_RUN_NOTE]
    assert note == f"{headline(metrics)}\n\n{recipe(params)}"
    assert note.startswith("**Test accuracy 85.00% fine-tuned, 80.00% with the base frozen")


def test_a_disabled_tracker_takes_every_call_and_logs_nothing(workdir, params, tmp_path):
    """A multi-worker cluster's other workers run the same stage code as its chief."""
    (tmp_path / "note.txt").write_text("x")
    with track_stage("phase1_extract", params, ("phase1",), enabled=False) as tracker:
        tracker.link_inputs([tmp_path / "note.txt"])
        tracker.log_params({"phase1.lr.head": 1e-3})
        tracker.log_epoch(1, {"loss": 1.0})
        tracker.log_results({"phase1.kept_epoch": 1})
        tracker.record_outputs([tmp_path / "note.txt"])
        tracker.log_artifacts([tmp_path / "note.txt"], comparison=True)
        tracker.log_model(object(), "baseline_model", ("a", "b"))
        tracker.link_model_metrics({"baseline_model": {"accuracy": 0.5}})
        tracker.log_execution(frame(1, 2).assign(phase=1), {Phase.EXTRACT: 2}, None)
    assert isinstance(tracker.inner, RecordingTracker) and tracker.inner.status == "FINISHED"
    assert [name for name, _ in tracker.inner.calls][:3] == [
        "link_inputs",
        "log_params",
        "log_epoch",
    ]
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlartifacts").exists()


def test_another_execution_gets_its_own_comparison_run(workdir, params, monkeypatch):
    with track_stage("prepare", params, ()) as first:
        pass
    monkeypatch.setattr(environment, "execution_id", lambda: "another-dvc-process")
    with track_stage("prepare", params, ()) as second:
        pass
    assert first.inner.comparison_run_id != second.inner.comparison_run_id


def test_inputs_link_to_the_run_that_wrote_them(workdir, params):
    output = workdir / "models" / "phase1.keras"
    output.parent.mkdir()
    output.write_bytes(b"weights")
    with track_stage("phase1_extract", params, ()) as producer:
        producer.record_outputs([output.relative_to(workdir)])
    with track_stage("phase2_finetune", params, ()) as consumer:
        consumer.link_inputs([output.relative_to(workdir)])
    tags = MlflowClient(tracking_uri()).get_run(consumer.inner.run_id).data.tags
    assert tags[INPUT_TAG.format(path="models/phase1.keras")] == producer.inner.run_id

    output.write_bytes(b"other weights")
    with track_stage("phase2_finetune", params, ()) as orphan:
        orphan.link_inputs([output.relative_to(workdir)])
    tags = MlflowClient(tracking_uri()).get_run(orphan.inner.run_id).data.tags
    assert INPUT_TAG.format(path="models/phase1.keras") not in tags


def test_fill_missing_steps_never_duplicates_a_step(workdir, params):
    with track_stage("report", params, ()) as tracker:
        already = {"val_loss": {3: 0.3}}  # a step the run has before the whole curve comes
        fill_missing_steps(tracker.inner.client, tracker.inner.comparison_run_id, already)
        series = {"val_loss": {1: 0.9, 2: 0.5, 3: 0.3}}
        fill_missing_steps(tracker.inner.client, tracker.inner.comparison_run_id, series)
        fill_missing_steps(tracker.inner.client, tracker.inner.comparison_run_id, series)
        history = tracker.inner.client.get_metric_history(
            tracker.inner.comparison_run_id, "val_loss"
        )
    assert sorted((m.step, m.value) for m in history) == [(1, 0.9), (2, 0.5), (3, 0.3)]


def test_runs_left_running_by_a_vanished_process_are_marked_killed(workdir, params):
    client = MlflowClient(tracking_uri())
    experiment_id = experiment_id_for(client, params.mlflow_experiment)
    gone = client.create_run(experiment_id, tags={TAG_PROCESS: f"{socket.gethostname()}-1-1"})
    alive = client.create_run(experiment_id, tags={TAG_PROCESS: environment.execution_id()})
    elsewhere = client.create_run(experiment_id, tags={TAG_PROCESS: "other-host-1-1"})
    close_orphaned_runs(client, experiment_id)
    status = {
        run.info.run_id: client.get_run(run.info.run_id).info.status
        for run in (gone, alive, elsewhere)
    }
    assert status == {
        gone.info.run_id: "KILLED",
        alive.info.run_id: "RUNNING",
        elsewhere.info.run_id: "RUNNING",  # another machine's process cannot be checked
    }


class FailingClient:
    def __init__(self):
        self.calls = 0

    def log_batch(self, *args, **kwargs):
        self.calls += 1
        raise MlflowException("API request to http://127.0.0.1:5000 failed: Connection refused")


def test_tracker_goes_offline_after_one_failure_and_says_how_to_relog(caplog):
    client = FailingClient()
    tracker = SafeTracker(MlflowTracker(client, "run", "comparison", project_params().mlflow))
    tracker.log_epoch(1, {"loss": 1.0})
    tracker.log_epoch(2, {"loss": 0.9})
    assert tracker.offline and client.calls == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "python -m src.relog" in warnings[0]


def test_unreachable_server_is_a_pipeline_error_and_local_stores_are_not_probed():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PipelineError, match=r"is not reachable .*unset MLFLOW_TRACKING_URI"):
        check_server(f"http://127.0.0.1:{port}")
    check_server("sqlite:///nowhere/mlflow.db")
    for malformed in ("http://localhost:50O0", "http://[::1", "http://localhost:5000 /"):
        with pytest.raises(PipelineError, match=r"is not reachable"):
            check_server(malformed)


def test_models_are_logged_models_of_the_comparison_run_with_their_accuracy(workdir, params):
    import keras
    import mlflow.pyfunc
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    registering = params.model_copy(
        update={"mlflow": params.mlflow.model_copy(update={"registered_model": "pets"})}
    )
    with track_stage("phase2_finetune", registering, ()) as tracker:
        for _ in range(2):  # the execution's final model: registered as pets
            tracker.log_model(model, "finetuned_model", ("cat", "dog"), final=True)
        tracker.link_model_metrics({"finetuned_model": {"finetuned_accuracy": 0.75}})
    client = MlflowClient(tracking_uri())
    outputs = client.get_run(tracker.inner.comparison_run_id).outputs.model_outputs
    logged = [client.get_logged_model(output.model_id) for output in outputs]
    assert [m.name for m in logged] == ["finetuned_model", "finetuned_model"]
    assert {m.source_run_id for m in logged} == {tracker.inner.comparison_run_id}
    experiment_id = client.get_run(tracker.inner.comparison_run_id).info.experiment_id
    assert {m.experiment_id for m in logged} == {experiment_id}, "in the experiment's Models tab"
    assert all(m.artifact_location.startswith((workdir / "mlartifacts").as_uri()) for m in logged)
    latest = logged[-1]
    assert [(m.key, m.value) for m in latest.metrics] == [("finetuned_accuracy", 0.75)]
    versions = client.search_model_versions("name = 'pets'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    loaded = mlflow.pyfunc.load_model(f"models:/{latest.model_id}")
    x = np.ones((1, 3), dtype="float32")
    expected = model(x).numpy()[0]
    (answer,) = loaded.predict(x)
    assert answer["label"] == ("cat", "dog")[expected.argmax()]
    assert [t["probability"] for t in answer["top"]] == sorted(expected.tolist(), reverse=True)
    assert loaded.predict(x, params={"top_k": 1})[0]["top"] == answer["top"][:1]
    raw = loaded.unwrap_python_model().model  # the Keras model itself, for who needs it
    assert raw(x).numpy().tolist() == model(x).numpy().tolist()
    info = mlflow.models.get_model_info(f"models:/{latest.model_id}")
    assert info.metadata == {"class_names": ["cat", "dog"]}
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 3)
    example = loaded.input_example  # what a request sends, answered like one
    assert example.shape == (1, 3) and loaded.predict(example)[0]["label"] in ("cat", "dog")
    history = client.get_metric_history(tracker.inner.comparison_run_id, "finetuned_accuracy")
    assert len(history) == 1, "linked once, not logged twice"


def test_the_model_card_and_exports_are_attached_to_the_logged_model(workdir, params, caplog):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    (workdir / "export").mkdir()
    (workdir / "export/model.onnx").write_bytes(b"onnx")
    (workdir / "card.md").write_text("# card")
    with track_stage("phase2_finetune", params, ()) as tracker:
        tracker.log_model(model, "finetuned_model", ("cat", "dog"))
        tracker.attach_to_model("finetuned_model", [workdir / "card.md", workdir / "export"])
        tracker.attach_to_model("baseline_model", [workdir / "card.md"])  # none logged: no-op
    client = MlflowClient(tracking_uri())
    (output,) = client.get_run(tracker.inner.comparison_run_id).outputs.model_outputs
    listed = {a.path for a in client.list_logged_model_artifacts(output.model_id)}
    assert {"card.md", "export"} <= listed
    # TensorFlow's own retracing notice depends on how many models this worker predicted
    # with before (the order of the tests), not on the tracker: every other warning counts.
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name != "tensorflow"]
    assert not [r.message for r in warnings]


def test_with_log_models_false_the_tracker_logs_no_model(workdir, params):
    """The stages hand every model to the tracker; params.yaml's mlflow.log_models decides."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    quiet = params.model_copy(
        update={"mlflow": params.mlflow.model_copy(update={"log_models": False})}
    )
    with track_stage("phase2_finetune", quiet, ()) as tracker:
        tracker.log_model(model, "finetuned_model", ("cat", "dog"), final=True)
    client = MlflowClient(tracking_uri())
    assert client.get_run(tracker.inner.comparison_run_id).outputs.model_outputs == []
    assert not tracker.offline


# A stage stopped while MLflow writes an epoch's metrics to its SQLite store, as a
# `docker stop` lands: the statement is about to run when SIGTERM comes.
STOPPED_WHILE_LOGGING = """
import os, signal, sqlalchemy
from mlflow.tracking import MlflowClient
from src.finetune.entrypoint import Interrupted, stop_on_signals
from src.finetune.tracking import track_stage
from src.finetune.tracking.mlflow.store import tracking_uri
from tests.support.params import project_params

@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
def stop(connection, cursor, statement, *args):
    if statement.startswith("INSERT INTO metrics"):
        os.kill(os.getpid(), signal.SIGTERM)

stop_on_signals()
try:
    with track_stage("phase1_extract", project_params(), ()) as tracker:
        tracker.log_epoch(1, {"val_accuracy": 0.5})
        print("went on after the stop")
except Interrupted as stopped:
    print(stopped)
sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", stop)
client = MlflowClient(tracking_uri())
for run_id in (tracker.inner.run_id, tracker.inner.comparison_run_id):
    run = client.get_run(run_id)
    print(run.info.status, run.data.metrics)
"""


def test_a_stop_inside_a_store_write_ends_the_call_then_marks_the_runs_killed(workdir):
    """Stopped inside the write, SQLite kept the cut connection's lock and marking the runs
    KILLED waited for it for ever: the stage lived on after `docker stop`."""
    result = subprocess.run(
        [sys.executable, "-c", STOPPED_WHILE_LOGGING],
        cwd=workdir,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "stopped by SIGTERM",
        "KILLED {'val_accuracy': 0.5}",  # the stage's run: the epoch was logged whole
        "KILLED {}",
    ], result.stderr[-3000:]
