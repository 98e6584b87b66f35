"""The runs of one pipeline execution: a comparison run, and one run per stage nested in it.

DVC runs each stage as its own process, so the stages of one ``dvc repro`` (or one
``dvc exp run``) find their shared comparison run through an execution id: the identity of
the DVC process that started them (see ``environment``). A later execution has another DVC
process, hence a new comparison run; it never appends to an earlier one's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from mlflow.entities import LifecycleStage, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_RUN_NOTE,
)

from src.finetune import environment
from src.finetune.errors import PipelineError
from src.finetune.evaluation.metrics import Metrics
from src.finetune.params import Params
from src.finetune.tracking.mlflow.store import (
    TRACKING_ERRORS,
    Store,
    follow_the_repository,
    local_artifacts,
    with_lock_retries,
)

TAG_EXECUTION = "pipeline.execution"
TAG_ROLE = "pipeline.role"
TAG_STAGE = "pipeline.stage"
TAG_COMPARISON = "pipeline.comparison_run_id"
TAG_DVC_EXP = "dvc.exp_name"
TAG_PROCESS = "pipeline.process"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
TAG_STUDY = "tune.study"
TAG_TRIAL = "tune.trial"
TAG_TRIAL_STATE = "tune.state"
MODEL_TRAINING = "custom_model_development"
COMPARISON_FILTER = f"tags.`{TAG_ROLE}` = 'comparison'"
log = logging.getLogger(__name__)


def param_value(value: Any) -> str:
    """A param as MLflow keeps it: text, with ``null`` as in params.yaml."""
    return "null" if value is None else str(value)


def params_batch(values: dict[str, Any]) -> list[Param]:
    return [Param(key, param_value(value)) for key, value in values.items()]


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> None:
    """Mark KILLED the runs still RUNNING whose process is gone (killed with SIGKILL)."""
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    for run in running:
        owner = run.data.tags.get(TAG_PROCESS)
        if owner and not environment.is_alive(owner):
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
    store = Store(client.tracking_uri)
    if experiment and store.own and store.database is not None:
        follow_the_repository(store.database, experiment.artifact_location)
    if experiment:
        if TAG_EXPERIMENT_KIND not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
        return experiment.experiment_id
    location = local_artifacts() if store.own else None
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING}
        )
    except MlflowException:  # another stage created it meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def context_tags(execution: str | None = None) -> dict[str, str]:
    """What every run of this execution is tagged with: the execution, the commit, the DVC
    experiment."""
    tags = {TAG_EXECUTION: execution or environment.execution_id()}
    if commit := environment.git_commit():
        tags[MLFLOW_GIT_COMMIT] = commit
    if exp_name := environment.experiment_name():
        tags[TAG_DVC_EXP] = exp_name
    if trial := environment.study_trial():
        tags |= {TAG_STUDY: trial.study, TAG_TRIAL: str(trial.number)}
    return tags


def comparison_run(
    client: MlflowClient,
    experiment_id: str,
    params: Params,
    tags: dict,
    name: str | None = None,
    logged: tuple[str, ...] | None = None,
) -> str:
    """This execution's comparison run: found by execution id, created by its first stage
    with every param, or only the sections and keys ``logged`` names."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_EXECUTION}` = '{tags[TAG_EXECUTION]}' and {COMPARISON_FILTER}",
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    name = name or tags.get(TAG_DVC_EXP) or time.strftime("repro-%Y%m%d-%H%M%S")
    # A tuning trial's comparison run sits under its study's run, as MLflow nests runs.
    trial = environment.study_trial()
    nested = {MLFLOW_PARENT_RUN_ID: trial.mlflow_run} if trial and trial.mlflow_run else {}
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            **tags,
            **nested,
            TAG_ROLE: "comparison",
            TAG_PROCESS: tags[TAG_EXECUTION],
            MLFLOW_RUN_NAME: name,
            MLFLOW_RUN_NOTE: recipe(params),
        },
    )
    values = params.flat() if logged is None else params.select(logged)
    client.log_batch(run.info.run_id, params=params_batch(values))
    return run.info.run_id


def recipe(params: Params) -> str:
    """What the execution trains, in a sentence: the top of its run page in the MLflow UI (the
    run's description), above the small tables of params and metrics."""
    weights = {"imagenet": "ImageNet weights", "none": "random weights"}.get(
        params.model.weights, f"weights from {params.model.weights}"
    )
    one, two = params.phase1, params.phase2
    return (
        f"{params.backbone.title} ({weights}) fine-tuned on {params.data.name}: phase 1 trains "
        f"the new head for {one.epochs} epochs at lr {one.lr:g}, phase 2 "
        f"{params.finetuned_part()} for {two.epochs} more at lr {two.lr:g}."
    )


def headline(metrics: Metrics) -> str:
    """The test accuracies, in bold above the recipe on the run's page: the fine-tuned
    model's, the frozen base's, and the classical reference's when it ran, with a warning
    when the fine-tuned model does not beat it beyond noise."""
    against = ""
    if metrics.classical:
        verdict = "beyond noise" if metrics.beats_classical else "NOT beyond noise"
        against = (
            f"; classical reference {100 * metrics.classical_accuracy:.2f}% "
            f"({100 * metrics.gain_over_classical:+.2f} points, {verdict})"
        )
    return (
        f"**Test accuracy {100 * metrics.finetuned_accuracy:.2f}% fine-tuned, "
        f"{100 * metrics.baseline_accuracy:.2f}% with the base frozen "
        f"({100 * metrics.accuracy_delta:+.2f} points){against}.**"
    )


def describe_with_headline(client: MlflowClient, run_id: str, metrics: Metrics) -> None:
    """Put the headline above the run's description (replacing an earlier headline)."""
    note = client.get_run(run_id).data.tags.get(MLFLOW_RUN_NOTE, "")
    if note.startswith("**Test accuracy"):
        note = note.split("\n\n", 1)[1] if "\n\n" in note else ""
    client.set_tag(run_id, MLFLOW_RUN_NOTE, f"{headline(metrics)}\n\n{note}".strip())


def stage_run(
    client: MlflowClient,
    experiment_id: str,
    comparison_id: str,
    tags: dict[str, str],
    stage: str,
    logged: dict[str, Any],
) -> str:
    """The stage's own run, nested in the comparison run (set RUNNING again), with the params
    the stage reads; if it cannot be made, the comparison run ends with the stage."""
    try:
        run = client.create_run(
            experiment_id,
            run_name=stage,
            tags={
                **tags,
                TAG_ROLE: "stage",
                TAG_STAGE: stage,
                TAG_COMPARISON: comparison_id,
                TAG_PROCESS: environment.this_process(),
                MLFLOW_PARENT_RUN_ID: comparison_id,
            },
        )
    except BaseException as error:  # the execution ends here: its comparison run with it
        end_runs(client, [comparison_id], error)
        raise
    try:
        with_lock_retries(client.log_batch, run.info.run_id, params=params_batch(logged))
        client.update_run(comparison_id, status=RunStatus.to_string(RunStatus.RUNNING))
    except BaseException as error:
        end_runs(client, [run.info.run_id, comparison_id], error)
        raise
    return run.info.run_id


def end_runs(client: MlflowClient, run_ids: list[str], error: BaseException) -> None:
    """Mark the runs KILLED (interrupted) or FAILED, as far as the store lets us."""
    status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
    for run_id in run_ids:
        with contextlib.suppress(*TRACKING_ERRORS):
            client.set_terminated(run_id, RunStatus.to_string(status))
