"""Experiment tracking behind small interfaces (``Tracker`` for a stage or a whole
execution, ``StudyTracker`` for a tuning study), and how each tool opens them.

``params.yaml``'s ``tracker`` picks a ``Backend`` from ``TRACKERS``: ``mlflow`` (see
``tracking.mlflow``) or ``none``, which logs nothing and records everything. Stages, tools and
the Keras callback see only the interfaces, a stage's always wrapped in ``SafeTracker``:
tracking never stops a stage once it runs. A second tracker (DVCLive, W&B) is one module with
its openers and one entry here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from src.finetune.entrypoint import stops_held
from src.finetune.errors import Pruned
from src.finetune.params import Params
from src.finetune.tracking.base import SafeTracker, Status, Tracker
from src.finetune.tracking.recording import RecordingTracker
from src.finetune.tracking.studies import RecordingStudyTracker, StudyTracker


@dataclass(frozen=True)
class Backend:
    """One tracker, as each part of the pipeline opens it. Each opener loads the tracker's
    library only when called (MLflow takes seconds to import), and raises ``PipelineError``
    in one line when the tracker cannot be used."""

    # A stage's run: (stage, params, the params sections it reads) -> its tracker.
    stage: Callable[[str, Params, tuple[str, ...]], Tracker]
    # A whole execution logged at once (relog): (params, execution id, run name, params
    # logged or None for all) -> its tracker.
    execution: Callable[[Params, str, str, tuple[str, ...] | None], Tracker]
    # A tuning study's run: (params, study name) -> its tracker.
    study: Callable[[Params, str], StudyTracker]
    # What a run of the pipeline in a workspace of its own (the demo, a tuning worker) needs
    # in its environment to log with the repository's runs: (repository root) -> variables.
    workspace_env: Callable[[Path], dict[str, str]]
    # Made ready from the repository before such runs start (the demo): (params) -> None.
    prepare: Callable[[Params], None]
    # Where it logs, in words: () -> a URI or a sentence.
    location: Callable[[], str]


def _mlflow() -> Backend:
    from src.finetune.tracking import mlflow  # MLflow loads in seconds: only when chosen

    return Backend(
        stage=mlflow.open_stage_tracker,
        execution=mlflow.open_execution_tracker,
        study=mlflow.open_study_tracker,
        workspace_env=mlflow.workspace_env,
        prepare=mlflow.open_experiment,
        location=mlflow.tracking_uri,
    )


def _none() -> Backend:
    return Backend(
        stage=lambda stage, params, logged: RecordingTracker(stage, params.select(logged)),
        execution=lambda params, execution, name, logged: RecordingTracker(
            name, params.flat() if logged is None else params.select(logged)
        ),
        study=lambda params, study: RecordingStudyTracker(),
        workspace_env=lambda root: {},
        prepare=lambda params: None,
        location=lambda: "nowhere (tracker: none in params.yaml)",
    )


# params.yaml's ``tracker`` -> its backend, built when first asked for.
TRACKERS: dict[str, Callable[[], Backend]] = {"mlflow": _mlflow, "none": _none}


def backend(params: Params) -> Backend:
    """The tracker params.yaml names."""
    return TRACKERS[params.tracker]()


@contextlib.contextmanager
def track_stage(
    stage: str, params: Params, logged_params: tuple[str, ...], enabled: bool = True
) -> Iterator[SafeTracker]:
    """The stage's tracker for the duration of the block, closed with its outcome.

    A failing or interrupted stage marks its runs FAILED or KILLED, so no run is left
    RUNNING. Not ``enabled`` (a worker other than the chief): nothing is logged.
    """
    opener = backend(params).stage if enabled else _none().stage
    tracker: SafeTracker | None = None
    status = Status.FAILED
    try:
        with stops_held():  # a stop while the runs are being created comes once they are
            tracker = SafeTracker(opener(stage, params, logged_params))
        yield tracker
        status = Status.FINISHED
    except (KeyboardInterrupt, Pruned):  # stopped on purpose, not failed
        status = Status.KILLED
        raise
    finally:
        if tracker is not None:
            tracker.close(status)


__all__ = [
    "TRACKERS",
    "Backend",
    "RecordingTracker",
    "SafeTracker",
    "Status",
    "Tracker",
    "backend",
    "track_stage",
]
