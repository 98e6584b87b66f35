"""What the comparison run shows of an execution, shaped as MLflow keeps metrics: one series
of (step, value) per key, the step being the global epoch (0 for a result)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from src.finetune.evaluation.metrics import Metrics

Series = dict[str, dict[int, float]]
BATCH_LIMIT = 1000  # MLflow's log_batch limit


def fill_missing_steps(client: MlflowClient, run_id: str, series: Mapping[str, Mapping]) -> None:
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
    for start in range(0, len(batch), BATCH_LIMIT):
        client.log_batch(run_id, metrics=batch[start : start + BATCH_LIMIT])


def history_series(history: pd.DataFrame) -> Series:
    """Every per-epoch column of a history as metric -> {epoch: value}."""
    return {
        column: dict(zip(history["epoch"].astype(int), history[column], strict=True))
        for column in history.columns
        if column not in ("epoch", "phase")
    }


def comparison_series(
    history: pd.DataFrame, kept: Mapping[int, int], metrics: Metrics | None
) -> Series:
    """What the comparison run shows of the outputs: the headline first (MLflow lists a run's
    metrics in the order they were first logged), then every per-epoch curve (the learning
    rate and the phase of each epoch among them) and a point at each kept epoch."""
    epochs = history["epoch"].astype(int)
    headline = metrics.headline() if metrics is not None else {}
    series = {key: {0: value} for key, value in headline.items()} | history_series(history)
    series["phase"] = dict(zip(epochs, history["phase"].astype(float), strict=True))
    series["kept"] = dict.fromkeys(kept.values(), 1.0)
    if "lr" in series:
        series["lr"] = {epoch: rate for epoch, rate in series["lr"].items() if rate == rate}
    return series
