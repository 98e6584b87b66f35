"""MLflow tracking: one run per stage, nested under one comparison run per pipeline execution.

DVC runs each stage as its own process, so the stages of one ``dvc repro`` (or one
``dvc exp run``) find their shared comparison run through an execution id: the identity of
the DVC process that started them. A later execution has another DVC process, hence a new
comparison run; it never appends to an earlier one's.

Stage runs are tagged with the content hashes of what they wrote; a later stage looks its
inputs up by hash and links to the runs that produced them, also when DVC reused those
outputs from its cache and the producing stage did not run in this execution.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import requests
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from mlflow.entities import LifecycleStage, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from sqlalchemy.exc import SQLAlchemyError

from src.finetune.errors import PipelineError, first_line, is_dvc
from src.finetune.files import content_hash
from src.finetune.metrics import headline
from src.finetune.params import Params

TAG_EXECUTION = "pipeline.execution"
TAG_ROLE = "pipeline.role"
TAG_STAGE = "pipeline.stage"
TAG_COMPARISON = "pipeline.comparison_run_id"
TAG_DVC_EXP = "dvc.exp_name"
TAG_PROCESS = "pipeline.process"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
OUTPUT_TAG = "pipeline.output.{path}"
INPUT_TAG = "pipeline.input.{path}"
SERVER_TIMEOUT_S = 5
# A stalled tracking server must not stall training: fail a request after about twenty
# seconds (three tries of five, with one and two seconds between) instead of MLflow's two
# minutes of retries, unless the user chose otherwise.
for _name, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
):
    os.environ.setdefault(_name, _value)
TRACKING_ERRORS = (
    MlflowException,
    requests.RequestException,
    OSError,
    sqlite3.Error,
    SQLAlchemyError,
    FileLockTimeout,
)
STORE_LOCK_TIMEOUT_S = 20
log = logging.getLogger(__name__)
# MLflow's SQL store logs each failed query with its traceback before it raises; the stage
# says what went wrong in one line of its own (or one warning, during a run).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def repository_root() -> Path:
    """The DVC repository root; DVC points DVC_ROOT at it, also for queued experiments."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` (a team server) or a SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repository_root() / 'mlflow.db'}"


def check_server(uri: str) -> None:
    """Fail in seconds, not minutes of retries, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        pass  # it answered (perhaps an auth proxy asking for credentials): it is up
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = first_line(getattr(error, "reason", None) or error)
        raise PipelineError(
            f"MLflow tracking server {uri[:200]} is not reachable ({reason}); start it, or unset "
            "MLFLOW_TRACKING_URI to log to mlflow.db in the repository"
        ) from None


def with_lock_retries(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``action``, waiting out a SQLite store that another stage holds for a moment."""
    for attempt in range(6):
        try:
            return action(*args, **kwargs)
        except MlflowException as error:
            if "database is locked" not in str(error) or attempt == 5:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def open_store(uri: str) -> Iterator[MlflowClient]:
    """A client whose store exists; a SQLite store is created by one process at a time.

    Parallel experiments (``dvc queue start -j 2``) start stages at the same moment; without
    the lock they would race to create the store's tables. The store is switched to WAL
    journaling, so a stage reading it never blocks another one writing.
    """
    if not uri.startswith("sqlite:///"):
        yield MlflowClient(tracking_uri=uri)
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database}.lock", timeout=STORE_LOCK_TIMEOUT_S):
        yield MlflowClient(tracking_uri=uri)  # creates the tables of a new store
        _use_wal(database)


def _use_wal(database: Path) -> None:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        with contextlib.suppress(sqlite3.OperationalError):  # busy: a later stage retries
            connection.execute("PRAGMA journal_mode=WAL")


def process_id(process: psutil.Process) -> str:
    """host-pid-start: names a process uniquely, even after its pid is reused."""
    return f"{socket.gethostname()}-{process.pid}-{int(process.create_time())}"


def execution_id() -> str:
    """Identify the ``dvc`` process that runs this stage; without one, this process."""
    process = psutil.Process()
    return process_id(next((p for p in process.parents() if is_dvc(p)), process))


def is_alive(identity: str) -> bool:
    """Whether the process named by ``process_id`` still runs; other hosts' count as alive."""
    parts = identity.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return True
    _, pid, started = parts
    try:
        return int(psutil.Process(int(pid)).create_time()) == int(started)
    except (psutil.NoSuchProcess, ValueError):
        return False


def git_commit() -> str | None:
    if rev := os.environ.get("DVC_EXP_BASELINE_REV"):
        return rev
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
    except OSError:  # no git: DVC works without it
        return None
    return result.stdout.strip() or None


def _param_value(value: Any) -> str:
    return "null" if value is None else str(value)


@dataclass
class StageTracker:
    """Logs one stage's results to its own run and to the execution's comparison run.

    If the tracking server goes away mid-stage, the stage goes on without it: the first
    failed call is reported once and later ones are skipped. Training and the DVC outputs
    never depend on tracking; ``python -m src.finetune.relog`` logs the outputs later.
    """

    client: MlflowClient
    run_id: str
    comparison_run_id: str
    offline: bool = False

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        """One finished epoch, at once (live), with step = the 1-based global epoch."""
        now = int(time.time() * 1000)
        batch = [Metric(key, value, now, step) for key, value in metrics.items()]
        for run_id in (self.run_id, self.comparison_run_id):
            self._call(self.client.log_batch, run_id, metrics=batch)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params the stage works out (a group's learning rate), to its own run."""
        batch = [Param(key, _param_value(value)) for key, value in params.items()]
        self._call(self.client.log_batch, self.run_id, params=batch)

    def log_results(self, results: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, 0) for key, value in results.items()]
        self._call(self.client.log_batch, self.run_id, metrics=batch)
        self.fill_comparison({k: {0: v} for k, v in results.items()})

    def fill_comparison(self, series: Mapping[str, Mapping[int, float]]) -> None:
        self._call(fill_missing_steps, self.client, self.comparison_run_id, series)

    def log_artifacts(self, *paths: Path, comparison: bool = False) -> None:
        for path in paths:
            for run_id in (self.run_id, self.comparison_run_id) if comparison else (self.run_id,):
                self._call(self.client.log_artifact, run_id, str(path))

    def record_outputs(self, *paths: Path) -> None:
        """Tag the stage run with the hashes of its outputs, for later stages to link to."""
        tags = [RunTag(OUTPUT_TAG.format(path=_key(p)), content_hash(p)) for p in paths]
        self._call(self.client.log_batch, self.run_id, tags=tags)

    def link_inputs(self, *paths: Path) -> None:
        """Tag the stage run with the run that produced each input, where one is recorded."""
        self._call(self._link_inputs, paths)

    def log_model(
        self,
        model: Any,
        name: str,
        class_names: tuple[str, ...],
        register_as: str | None = None,
    ) -> None:
        """Log a Keras model as an MLflow 3 logged model of the comparison run, its class
        names in its metadata; optionally register it as a new version of ``register_as``."""
        self._call(self._log_model, model, name, class_names, register_as)

    def link_metrics_to_models(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        """Log ``{model name: {key: value}}`` to the comparison run, each value linked to the
        logged model of that name, so the model's page shows its accuracy."""
        self._call(self._link_metrics_to_models, metrics)

    def close(self, status: str) -> None:
        """End both runs with ``status``; tried even after a failed call switched the
        tracker off, since the store may well be there."""
        for run_id in (self.run_id, self.comparison_run_id):
            try:
                with_lock_retries(self.client.set_terminated, run_id, status)
            except TRACKING_ERRORS as error:
                log.warning("MLflow: run %s could not be closed (%s)", run_id, first_line(error))

    def _log_model(
        self, model: Any, name: str, class_names: tuple[str, ...], register_as: str | None
    ) -> None:
        # Imported here: only the training stages, which load TensorFlow anyway, log models.
        import keras
        import mlflow
        import mlflow.keras
        import tensorflow as tf
        from mlflow.models import Model

        # Model.log uses the global store and experiment: the comparison run's.
        mlflow.set_tracking_uri(self.client.tracking_uri)
        run = self.client.get_run(self.comparison_run_id)
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        # Named requirements spare MLflow a subprocess that reloads the model to infer them.
        requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.keras,
            run_id=self.comparison_run_id,
            registered_model_name=register_as,
            await_registration_for=0,
            metadata={"class_names": list(class_names)},
            model=model,
            signature=_signature(model),
            pip_requirements=requirements,
        )
        log.info("logged %s as MLflow model %s (models:/%s)", name, info.model_id, info.model_id)
        if register_as:
            log.info(
                "registered %s as model %s version %s",
                name,
                register_as,
                info.registered_model_version,
            )

    def _link_metrics_to_models(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        outputs = self.client.get_run(self.comparison_run_id).outputs
        ids = {
            self.client.get_logged_model(output.model_id).name: output.model_id
            for output in (outputs.model_outputs if outputs else [])
        }
        now = int(time.time() * 1000)
        for name, values in metrics.items():
            if name in ids:
                batch = [Metric(k, float(v), now, 0, model_id=ids[name]) for k, v in values.items()]
                self.client.log_batch(self.comparison_run_id, metrics=batch)

    def _link_inputs(self, paths: tuple[Path, ...]) -> None:
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        tags = []
        for path in paths:
            producer = _producer(self.client, experiment_id, path)
            if producer:
                tags.append(RunTag(INPUT_TAG.format(path=_key(path)), producer))
        if tags:
            self.client.log_batch(self.run_id, tags=tags)

    def _call(self, action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call the store; a failure never stops the stage. A store that cannot be reached
        switches the tracker off (said once); any other failure is said, and skipped."""
        if self.offline:
            return
        try:
            with_lock_retries(action, *args, **kwargs)
        except Exception as error:  # logging must never stop the training
            if not isinstance(error, TRACKING_ERRORS) or not _unreachable(error):
                log.warning(
                    "MLflow: %s failed (%s); the stage goes on",
                    getattr(action, "__name__", "a call").strip("_").replace("_", " "),
                    first_line(error),
                )
                return
            self.offline = True
            log.warning(
                "MLflow tracking failed (%s); the stage goes on without it. Once the server "
                "is back, log the outputs with `python -m src.finetune.relog`",
                first_line(error),
            )


def _unreachable(error: BaseException) -> bool:
    """Whether the store itself is out of reach (rather than one request being refused)."""
    if isinstance(error, requests.RequestException | FileLockTimeout | sqlite3.OperationalError):
        return True
    text = str(error)
    return any(
        sign in text
        for sign in ("Max retries exceeded", "Connection refused", "timed out", "API request to")
    )


def _signature(model: Any) -> ModelSignature:
    """Tensor in, tensor out, with the model's own shapes (batch size left free)."""

    def spec(tensor: Any) -> Schema:
        shape = (-1, *(-1 if d is None else d for d in tensor.shape[1:]))
        return Schema([TensorSpec(np.dtype(tensor.dtype), shape)])

    return ModelSignature(inputs=spec(model.inputs[0]), outputs=spec(model.outputs[0]))


def _key(path: Path) -> str:
    return Path(path).as_posix()


def _producer(client: MlflowClient, experiment_id: str, path: Path) -> str | None:
    tag = OUTPUT_TAG.format(path=_key(path))
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tag}` = '{content_hash(path)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def fill_missing_steps(
    client: MlflowClient, run_id: str, series: Mapping[str, Mapping[int, float]]
) -> None:
    """Log the points a run does not have yet, so re-logging never duplicates a step."""
    now = int(time.time() * 1000)
    batch = []
    for key, points in series.items():
        logged = {m.step for m in client.get_metric_history(run_id, key)}
        batch += [
            Metric(key, float(v), now, int(step))
            for step, v in points.items()
            if step not in logged
        ]
    for start in range(0, len(batch), 1000):  # MLflow's log_batch limit
        client.log_batch(run_id, metrics=batch[start : start + 1000])


def history_series(history: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Every per-epoch column of a history as metric -> {epoch: value}."""
    return {
        column: dict(zip(history["epoch"].astype(int), history[column], strict=True))
        for column in history.columns
        if column not in ("epoch", "phase")
    }


def headline_series(metrics: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    return {key: {0: value} for key, value in headline(dict(metrics)).items()}


def comparison_series(
    history: pd.DataFrame, kept: Mapping[int, int], metrics: Mapping[str, Any]
) -> dict[str, dict[int, float]]:
    """What the comparison run shows of the outputs: every per-epoch curve (the learning rate
    and the phase of each epoch among them), a point at each kept epoch, the headline."""
    epochs = history["epoch"].astype(int)
    series = history_series(history)
    series["phase"] = dict(zip(epochs, history["phase"].astype(float), strict=True))
    series["kept"] = dict.fromkeys(kept.values(), 1.0)
    if "lr" in series:
        series["lr"] = {epoch: rate for epoch, rate in series["lr"].items() if rate == rate}
    return series | headline_series(metrics)


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> None:
    """Mark KILLED the runs still RUNNING whose process is gone (killed with SIGKILL)."""
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    for run in running:
        owner = run.data.tags.get(TAG_PROCESS)
        if owner and not is_alive(owner):
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            log.info(
                "marked run %s (%s) KILLED: its process is gone", run.info.run_name, run.info.run_id
            )


def experiment_id_for(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it as a model-training experiment if it is new.

    MLflow 3 opens an experiment on the view its kind says; without the tag it may open the
    GenAI one, where runs, params and metrics are a click away. An experiment made before
    the tag existed gets it, unless someone chose another kind.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment and experiment.lifecycle_stage == LifecycleStage.DELETED:
        raise PipelineError(
            f"MLflow experiment {name!r} is deleted; restore it (`mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}`) or set mlflow.experiment to a new name"
        )
    local = "MLFLOW_TRACKING_URI" not in os.environ
    if experiment and local:
        follow_the_repository(client, experiment.artifact_location)
    if experiment:
        if TAG_EXPERIMENT_KIND not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
        return experiment.experiment_id
    location = local_artifacts() if local else None
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING}
        )
    except MlflowException:  # another stage created it meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def local_artifacts() -> str:
    """Where the repository's own store keeps artifacts: mlartifacts/ beside mlflow.db."""
    return (repository_root() / "mlartifacts").as_uri()


# Where the local store names artifact locations: a move rewrites them.
LOCATIONS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def follow_the_repository(client: MlflowClient, location: str) -> None:
    """After the repository was moved or copied, point its store at its own mlartifacts/.

    MLflow keeps absolute artifact locations. A repository moved (or copied) elsewhere would
    go on logging to the old place (or into the original's folder); the local SQLite store
    is the repository's own, so its locations are rewritten from the old root to the new.
    """
    new = local_artifacts()
    if location == new or not location.endswith("/mlartifacts"):
        return
    database = client.tracking_uri.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection, connection:
        for table, column in LOCATIONS:
            connection.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE substr({column}, 1, ?) = ?",
                (new, len(location) + 1, len(location), location),
            )
    log.info("the repository moved: MLflow artifacts now go to %s", new)


def context_tags() -> dict[str, str]:
    tags = {TAG_EXECUTION: execution_id()}
    if commit := git_commit():
        tags[MLFLOW_GIT_COMMIT] = commit
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        tags[TAG_DVC_EXP] = exp_name
    return tags


def comparison_run(
    client: MlflowClient, experiment_id: str, params: Params, tags: dict, name: str | None = None
) -> str:
    """This execution's comparison run: found by execution id, created by its first stage."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_EXECUTION}` = '{tags[TAG_EXECUTION]}' "
        f"and tags.`{TAG_ROLE}` = 'comparison'",
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    name = name or tags.get(TAG_DVC_EXP) or time.strftime("repro-%Y%m%d-%H%M%S")
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            **tags,
            TAG_ROLE: "comparison",
            TAG_PROCESS: tags[TAG_EXECUTION],
            MLFLOW_RUN_NAME: name,
        },
    )
    flat = params.flat()
    client.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in flat.items()])
    return run.info.run_id


def _open_runs(
    uri: str, stage: str, params: Params, logged_params: tuple[str, ...]
) -> StageTracker:
    with open_store(uri) as client:
        experiment_id = experiment_id_for(client, params.mlflow.experiment)
        close_orphaned_runs(client, experiment_id)
        tags = context_tags()
        comparison_id = comparison_run(client, experiment_id, params, tags)
    try:
        run = client.create_run(
            experiment_id,
            run_name=stage,
            tags={
                **tags,
                TAG_ROLE: "stage",
                TAG_STAGE: stage,
                TAG_COMPARISON: comparison_id,
                TAG_PROCESS: process_id(psutil.Process()),
                MLFLOW_PARENT_RUN_ID: comparison_id,
            },
        )
    except BaseException as error:  # the execution ends here: its comparison run with it
        status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
        with contextlib.suppress(*TRACKING_ERRORS):
            client.set_terminated(comparison_id, RunStatus.to_string(status))
        raise
    tracker = StageTracker(client, run.info.run_id, comparison_id)
    try:
        selected = params.select(logged_params)
        batch = [Param(k, _param_value(v)) for k, v in selected.items()]
        with_lock_retries(client.log_batch, run.info.run_id, params=batch)
        client.update_run(comparison_id, status=RunStatus.to_string(RunStatus.RUNNING))
    except BaseException as error:
        status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
        tracker.close(RunStatus.to_string(status))
        raise
    return tracker


@contextlib.contextmanager
def store_errors_as_one_line(uri: str) -> Iterator[None]:
    """What goes wrong opening the store, as one line saying what to do."""
    try:
        yield
    except PipelineError:
        raise
    except FileLockTimeout:
        raise PipelineError(
            f"{uri.removeprefix('sqlite:///')} stayed locked by another process for "
            f"{STORE_LOCK_TIMEOUT_S} s; wait for it to finish, or stop it"
        ) from None
    except TRACKING_ERRORS as error:
        raise PipelineError(_store_problem(uri, error)) from None


def _store_problem(uri: str, error: BaseException) -> str:
    reason = first_line(error)
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        if "database is locked" in str(error):
            reason = "database is locked"
            return f"{path} is locked by another process ({reason}); wait for it, or stop it"
        return (
            f"{path} is not a usable MLflow store ({reason}); move it aside to start a new one "
            "(`mv mlflow.db mlflow.db.broken`), or point MLFLOW_TRACKING_URI at a server"
        )
    return (
        f"the MLflow store at {uri} does not work ({reason}); check MLFLOW_TRACKING_URI and the "
        "server, or unset MLFLOW_TRACKING_URI to log to mlflow.db in the repository"
    )


class _NoClient:
    """Stands in for ``MlflowClient`` where nothing is logged: every call does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class NoTracker(StageTracker):
    """Logs nothing: a multi-worker cluster's workers other than the chief."""

    def __init__(self) -> None:
        super().__init__(client=_NoClient(), run_id="", comparison_run_id="", offline=True)  # type: ignore[arg-type]

    def close(self, status: str) -> None:
        pass


@contextlib.contextmanager
def track_stage(
    stage: str, params: Params, logged_params: tuple[str, ...], enabled: bool = True
) -> Iterator[StageTracker]:
    """Open the stage's run for the duration of the block, and close it with its outcome.

    A failing or interrupted stage marks its run and the comparison run FAILED or KILLED,
    so no run is left RUNNING. Not ``enabled``: nothing is logged (see ``NoTracker``).
    """
    if not enabled:
        yield NoTracker()
        return
    uri = tracking_uri()
    check_server(uri)
    with store_errors_as_one_line(uri):
        tracker = _open_runs(uri, stage, params, logged_params)
    status = RunStatus.FAILED
    try:
        yield tracker
        status = RunStatus.FINISHED
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    finally:
        tracker.close(RunStatus.to_string(status))
