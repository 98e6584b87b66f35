"""A tracker that logs nothing anywhere and records what it was given.

It stands in where nothing may be logged (a multi-worker cluster's workers other than the
chief; ``tracker: none`` in params.yaml), and lets tests assert on what a stage logged
without a store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from src.finetune.evaluation.metrics import Metrics
from src.finetune.tracking.base import Status, Tracker


@dataclass
class RecordingTracker(Tracker):
    """Every call kept, in order, as ``(method, arguments)``; ``status`` once closed."""

    stage: str = ""
    logged_params: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    status: Status | None = None
    name = "recording"

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.calls.append(("log_params", (dict(params),)))

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.calls.append(("log_epoch", (epoch, dict(metrics))))

    def log_results(self, results: Mapping[str, float], comparison: bool = False) -> None:
        self.calls.append(("log_results", (dict(results), comparison)))

    def log_execution(
        self, history: pd.DataFrame, kept: Mapping[int, int], metrics: Metrics
    ) -> None:
        self.calls.append(("log_execution", (history, dict(kept), metrics)))

    def log_artifacts(self, paths: Sequence[Path], comparison: bool = False) -> None:
        self.calls.append(("log_artifacts", (tuple(paths), comparison)))

    def log_model(
        self, model: Any, name: str, class_names: tuple[str, ...], final: bool = False
    ) -> None:
        self.calls.append(("log_model", (model, name, class_names, final)))

    def link_model_metrics(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        self.calls.append(("link_model_metrics", (dict(metrics),)))

    def attach_to_model(self, name: str, paths: Sequence[Path]) -> None:
        self.calls.append(("attach_to_model", (name, tuple(paths))))

    def record_outputs(self, paths: Sequence[Path]) -> None:
        self.calls.append(("record_outputs", (tuple(paths),)))

    def link_inputs(self, paths: Sequence[Path]) -> None:
        self.calls.append(("link_inputs", (tuple(paths),)))

    def close(self, status: Status) -> None:
        self.status = status

    def called(self, method: str) -> list[tuple]:
        """The arguments of every call of ``method``, in order."""
        return [arguments for name, arguments in self.calls if name == method]

    @property
    def results(self) -> dict[str, float]:
        """Every result logged, the last value of each key."""
        merged: dict[str, float] = {}
        for results, _ in self.called("log_results"):
            merged |= results
        return merged

    @property
    def epochs(self) -> dict[int, dict[str, float]]:
        """Epoch -> the metrics logged for it."""
        merged: dict[int, dict[str, float]] = {}
        for epoch, metrics in self.called("log_epoch"):
            merged.setdefault(epoch, {}).update(metrics)
        return merged
