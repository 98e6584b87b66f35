"""MLflow as a ``Tracker`` and a ``StudyTracker``: the store (``store``), the runs of an
execution (``runs``), lineage between stages (``lineage``), logged models (``models``), the
comparison run's series (``series``), the tracker itself (``tracker``), a tuning study's run
(``studies``), and the openers ``tracking.TRACKERS`` names."""

from __future__ import annotations

from pathlib import Path

from src.finetune.params import Params
from src.finetune.tracking.mlflow.runs import (
    close_orphaned_runs,
    comparison_run,
    context_tags,
    experiment_id_for,
    stage_run,
)
from src.finetune.tracking.mlflow.store import (
    check_server,
    open_store,
    store_errors_as_one_line,
    tracking_uri,
)
from src.finetune.tracking.mlflow.studies import MlflowStudyTracker, open_study
from src.finetune.tracking.mlflow.tracker import MlflowTracker


def open_stage_tracker(stage: str, params: Params, logged_params: tuple[str, ...]) -> MlflowTracker:
    """The stage's run, nested in this execution's comparison run (created by the first
    stage); a store that does not work is one line (``PipelineError``)."""
    uri = tracking_uri()
    check_server(uri)
    with store_errors_as_one_line(uri):
        with open_store(uri) as client:
            experiment_id = experiment_id_for(client, params.mlflow_experiment)
            close_orphaned_runs(client, experiment_id)
            tags = context_tags()
            comparison_id = comparison_run(client, experiment_id, params, tags)
        run_id = stage_run(
            client, experiment_id, comparison_id, tags, stage, params.select(logged_params)
        )
    return MlflowTracker(client, run_id, comparison_id, params.mlflow)


def open_execution_tracker(
    params: Params, execution: str, name: str, logged_params: tuple[str, ...] | None = None
) -> MlflowTracker:
    """A comparison run of its own for ``execution``, found again by it: a tool logging a
    whole execution at once (relog) logs to it as its stage run too, with the params
    ``logged_params`` names (all by default)."""
    uri = tracking_uri()
    check_server(uri)
    with store_errors_as_one_line(uri), open_store(uri) as client:
        experiment_id = experiment_id_for(client, params.mlflow_experiment)
        close_orphaned_runs(client, experiment_id)  # the runs a dead server lost track of
        tags = context_tags(execution)
        run_id = comparison_run(client, experiment_id, params, tags, name, logged_params)
    return MlflowTracker(client, run_id, run_id, params.mlflow)


def open_experiment(params: Params) -> str:
    """The params' MLflow experiment, created here if new: a tool that runs the pipeline in
    a workspace of its own (the demo) calls it from the repository, so the experiment's
    artifacts go to the repository's mlartifacts/, not the workspace's."""
    uri = tracking_uri()
    check_server(uri)
    with store_errors_as_one_line(uri), open_store(uri) as client:
        return experiment_id_for(client, params.mlflow_experiment)


def open_study_tracker(params: Params, study: str) -> MlflowStudyTracker:
    """The study's run in the params' experiment (see ``studies.open_study``)."""
    return open_study(params.mlflow_experiment, study)


def workspace_env(root: Path) -> dict[str, str]:
    """A run in a workspace logs to the repository's store (or the team's server), not to a
    store in the workspace."""
    return {"MLFLOW_TRACKING_URI": tracking_uri(root)}
