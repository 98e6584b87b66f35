"""The ``Tracker`` interface: everything stages, the per-epoch Keras callback and the tools
may tell an experiment tracker, and the one wrapper that keeps a failing tracker from ever
stopping a stage.

A stage logs to its own run, nested under one comparison run per pipeline execution (see
``tracking.mlflow``). What the interface takes is the pipeline's own data: params, an epoch's
metrics, results, the files it read and wrote, models, the whole execution's curves.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from src.finetune.entrypoint import stops_held
from src.finetune.errors import first_line
from src.finetune.evaluation.metrics import Metrics

log = logging.getLogger(__name__)
RELOG = "python -m src.relog"


class Status(enum.StrEnum):
    """How a run ended."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Tracker(ABC):
    """What a stage logs. Every method may fail: wrap an implementation in ``SafeTracker``."""

    name = "tracker"  # as log lines name it: "MLflow"

    @abstractmethod
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params the stage works out (a group's learning rate), to its own run."""

    @abstractmethod
    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One finished epoch (1-based, global across phases), live, to the stage run. The
        comparison run gets the whole curve at once from ``log_execution``."""

    @abstractmethod
    def log_results(self, results: Mapping[str, float], comparison: bool = False) -> None:
        """The stage's results (image counts, the kept epoch, test accuracy) to the stage run,
        and with ``comparison`` to the comparison run too, in the order given."""

    @abstractmethod
    def log_execution(
        self, history: pd.DataFrame, kept: Mapping[int, int], metrics: Metrics
    ) -> None:
        """The whole execution to the comparison run: every epoch of both phases (also those
        DVC took from its cache), the kept epochs and the headline metrics."""

    @abstractmethod
    def log_artifacts(self, paths: Sequence[Path], comparison: bool = False) -> None:
        """Files to the stage run, and with ``comparison`` to the comparison run too."""

    @abstractmethod
    def log_model(
        self, model: Any, name: str, class_names: tuple[str, ...], final: bool = False
    ) -> None:
        """A Keras model of the comparison run, its class names in its metadata; ``final``
        marks the execution's result, which the tracker may register as a new version of a
        model (MLflow: ``mlflow.registered_model``). A tracker set to log no models (MLflow:
        ``mlflow.log_models: false``) logs nothing."""

    @abstractmethod
    def link_model_metrics(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        """``{model name: {key: value}}``, each value linked to the logged model of that name."""

    @abstractmethod
    def attach_to_model(self, name: str, paths: Sequence[Path]) -> None:
        """Files (the model card, the exports) to the logged model of that name."""

    @abstractmethod
    def record_outputs(self, paths: Sequence[Path]) -> None:
        """Lineage: the content of what the stage wrote, for later stages to link to."""

    @abstractmethod
    def link_inputs(self, paths: Sequence[Path]) -> None:
        """Lineage: the run that produced each input, where one is recorded."""

    @abstractmethod
    def close(self, status: Status) -> None:
        """End the stage's runs with ``status``."""

    def unreachable(self, error: BaseException) -> bool:
        """Whether ``error`` says the tracker itself is out of reach (not one call refused)."""
        return False


class SafeTracker(Tracker):
    """Any tracker, exception-safe: a failed call is one warning and the stage goes on.

    A tracker out of reach (``Tracker.unreachable``) is switched off, said once, and the
    outputs can be logged later with the relog tool; any other failure is said and skipped.
    ``close`` is tried even then: the store may well be back. A stop signal waits for the
    call under way to end (``entrypoint.stops_held``), so no store is left mid-transaction.
    """

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.name = inner.name
        self.offline = False

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.offline:
            return
        try:
            with stops_held():
                getattr(self.inner, method)(*args, **kwargs)
        except Exception as error:  # logging must never stop the training
            if not self.inner.unreachable(error):
                what = method.strip("_").replace("_", " ")
                log.warning(
                    "%s: %s failed (%s); the stage goes on", self.name, what, first_line(error)
                )
                return
            self.offline = True
            log.warning(
                "%s tracking failed (%s); the stage goes on without it. Once the server is "
                "back, log the outputs with `%s`",
                self.name,
                first_line(error),
                RELOG,
            )

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._call("log_params", params)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self._call("log_epoch", epoch, metrics)

    def log_results(self, results: Mapping[str, float], comparison: bool = False) -> None:
        self._call("log_results", results, comparison=comparison)

    def log_execution(
        self, history: pd.DataFrame, kept: Mapping[int, int], metrics: Metrics
    ) -> None:
        self._call("log_execution", history, kept, metrics)

    def log_artifacts(self, paths: Sequence[Path], comparison: bool = False) -> None:
        self._call("log_artifacts", paths, comparison=comparison)

    def log_model(
        self, model: Any, name: str, class_names: tuple[str, ...], final: bool = False
    ) -> None:
        self._call("log_model", model, name, class_names, final)

    def link_model_metrics(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        self._call("link_model_metrics", metrics)

    def attach_to_model(self, name: str, paths: Sequence[Path]) -> None:
        self._call("attach_to_model", name, paths)

    def record_outputs(self, paths: Sequence[Path]) -> None:
        self._call("record_outputs", paths)

    def link_inputs(self, paths: Sequence[Path]) -> None:
        self._call("link_inputs", paths)

    def close(self, status: Status) -> None:
        try:
            with stops_held():
                self.inner.close(status)
        except Exception as error:  # the stage's own outcome matters more than its runs'
            log.warning("%s: the runs could not be closed (%s)", self.name, first_line(error))
