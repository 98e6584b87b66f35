"""A tuning study in MLflow: a parent run named after the study, each trial's comparison run
nested under it (the stages nest it, see ``runs.comparison_run``), tagged with the study, the
trial number and its final state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

from src.finetune.tracking.mlflow.runs import (
    TAG_ROLE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TRIAL_STATE,
    experiment_id_for,
    param_value,
)
from src.finetune.tracking.mlflow.store import (
    check_server,
    open_store,
    store_errors_as_one_line,
    tracking_uri,
    with_lock_retries,
)
from src.finetune.tracking.studies import StudyTracker

# How a trial that did not complete leaves its runs still open.
ENDED_AS = {"pruned": RunStatus.KILLED, "fail": RunStatus.FAILED}


class MlflowStudyTracker(StudyTracker):
    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str, study: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.study = study

    def trial_finished(self, number: int, state: str) -> None:
        trial = f"tags.`{TAG_STUDY}` = '{self.study}' and tags.`{TAG_TRIAL}` = '{number}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=trial)
        for run in runs:
            with_lock_retries(self.client.set_tag, run.info.run_id, TAG_TRIAL_STATE, state)
            # Between two stages the comparison run reads FINISHED (each stage closes it, the
            # next reopens it): a trial stopped there never finished its execution.
            comparison = run.data.tags.get(TAG_ROLE) == "comparison"
            if (run.info.status == "RUNNING" or comparison) and state in ENDED_AS:
                status = RunStatus.to_string(ENDED_AS[state])
                with_lock_retries(self.client.set_terminated, run.info.run_id, status)

    def study_finished(
        self,
        settings: Mapping[str, Any],
        best: Mapping[str, Any],
        numbers: Mapping[str, float],
        files: Sequence[Path],
    ) -> None:
        logged = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, param_value(v)) for k, v in settings.items() if k not in logged]
        metrics = [Metric(key, float(value), 0, 0) for key, value in numbers.items()]
        with_lock_retries(self.client.log_batch, self.run_id, metrics=metrics, params=fresh)
        for key, value in best.items():  # the best trial changes as a study goes on: tags
            with_lock_retries(self.client.set_tag, self.run_id, f"best.{key}", param_value(value))
        note = ", ".join(f"{key}={value}" for key, value in best.items())
        with_lock_retries(self.client.set_tag, self.run_id, MLFLOW_RUN_NOTE, f"Best trial: {note}")
        for path in files:
            with_lock_retries(self.client.log_artifact, self.run_id, str(path))
        with_lock_retries(self.client.set_terminated, self.run_id, "FINISHED")


def open_study(experiment: str, study: str) -> MlflowStudyTracker:
    """The study's run in ``experiment`` (tagged with its name), made by the first worker; a
    store that does not work is one line.

    Workers on several machines may start together and each make one: then every worker
    keeps the oldest, and the others are deleted, so the trials of all of them nest under
    one run.
    """
    uri = tracking_uri()
    check_server(uri)
    with store_errors_as_one_line(uri), open_store(uri) as client:
        experiment_id = experiment_id_for(client, experiment)
        if not _study_runs(client, experiment_id, study):
            client.create_run(
                experiment_id,
                run_name=study,
                tags={TAG_ROLE: "study", TAG_STUDY: study, MLFLOW_RUN_NAME: study},
            )
        oldest, *others = _study_runs(client, experiment_id, study)
        for run in others:
            client.delete_run(run.info.run_id)
        client.update_run(oldest.info.run_id, status="RUNNING")
    return MlflowStudyTracker(client, experiment_id, oldest.info.run_id, study)


def _study_runs(client: MlflowClient, experiment_id: str, study: str) -> list:
    """The study's runs, oldest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_ROLE}` = 'study' and tags.`{TAG_STUDY}` = '{study}'",
        order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
    )
