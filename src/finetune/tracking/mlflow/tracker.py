"""``MlflowTracker``: the ``Tracker`` interface on MLflow, one run per stage nested under the
execution's comparison run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from src.finetune.errors import first_line
from src.finetune.evaluation.metrics import Metrics
from src.finetune.params import MlflowParams
from src.finetune.tracking.base import Status, Tracker
from src.finetune.tracking.mlflow import lineage, models, series
from src.finetune.tracking.mlflow.runs import describe_with_headline, param_value
from src.finetune.tracking.mlflow.store import TRACKING_ERRORS, unreachable, with_lock_retries

log = logging.getLogger(__name__)


class MlflowTracker(Tracker):
    """Logs a stage to its own run (``run_id``) and its results to the comparison run; both
    the same run for a tool that logs a whole execution at once (relog).

    The comparison run holds results, not progress: MLflow lists a run's metrics (on its page,
    and as the default axis of Compare's parallel coordinates) in the order they were first
    logged, so the test accuracies go first (evaluate), the curves after them (report).
    """

    name = "MLflow"

    def __init__(
        self, client: MlflowClient, run_id: str, comparison_run_id: str, settings: MlflowParams
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.comparison_run_id = comparison_run_id
        self.settings = settings  # params.yaml's mlflow section: which models, registered how

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.run_id, self.comparison_run_id)))

    def _batch(self, run_id: str, **batch: Any) -> None:
        with_lock_retries(self.client.log_batch, run_id, **batch)

    def log_params(self, params: Mapping[str, Any]) -> None:
        batch = [Param(key, param_value(value)) for key, value in params.items()]
        self._batch(self.run_id, params=batch)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._batch(self.run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])

    def log_results(self, results: Mapping[str, float], comparison: bool = False) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, 0) for key, value in results.items()]
        self._batch(self.run_id, metrics=batch)
        if comparison and self.comparison_run_id != self.run_id:
            with_lock_retries(
                series.fill_missing_steps,
                self.client,
                self.comparison_run_id,
                {key: {0: value} for key, value in results.items()},
            )

    def log_execution(
        self, history: pd.DataFrame, kept: Mapping[int, int], metrics: Metrics | None
    ) -> None:
        shaped = series.comparison_series(history, kept, metrics)
        with_lock_retries(series.fill_missing_steps, self.client, self.comparison_run_id, shaped)
        if metrics is not None:
            with_lock_retries(describe_with_headline, self.client, self.comparison_run_id, metrics)

    def log_artifacts(self, paths: Sequence[Path], comparison: bool = False) -> None:
        for path in paths:
            for run_id in self.runs if comparison else (self.run_id,):
                if path.is_dir():  # a folder (the exports) keeps its name in the run
                    with_lock_retries(self.client.log_artifacts, run_id, str(path), path.name)
                else:
                    with_lock_retries(self.client.log_artifact, run_id, str(path))

    def log_model(
        self, model: Any, name: str, class_names: tuple[str, ...], final: bool = False
    ) -> None:
        if not self.settings.log_models:
            return
        register_as = self.settings.registered_model if final else None
        models.log_model(self.client, self.comparison_run_id, model, name, class_names, register_as)

    def link_model_metrics(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        with_lock_retries(models.link_model_metrics, self.client, self.comparison_run_id, metrics)

    def attach_to_model(self, name: str, paths: Sequence[Path]) -> None:
        with_lock_retries(models.attach_to_model, self.client, self.comparison_run_id, name, paths)

    def record_outputs(self, paths: Sequence[Path]) -> None:
        with_lock_retries(lineage.record_outputs, self.client, self.run_id, paths)

    def link_inputs(self, paths: Sequence[Path]) -> None:
        with_lock_retries(lineage.link_inputs, self.client, self.run_id, paths)

    def close(self, status: Status) -> None:
        """End both runs; each is tried even if the other cannot be closed."""
        for run_id in self.runs:
            try:
                with_lock_retries(self.client.set_terminated, run_id, str(status))
            except TRACKING_ERRORS as error:
                log.warning("MLflow: run %s could not be closed (%s)", run_id, first_line(error))

    def unreachable(self, error: BaseException) -> bool:
        return unreachable(error)
