"""Experiment tracking behind one small interface (``Tracker``), and how a stage opens it.

``params.yaml``'s ``tracker`` picks the implementation from ``TRACKERS``: ``mlflow`` (see
``tracking.mlflow``) or ``none``, which logs nothing. A stage sees only the interface, always
wrapped in ``SafeTracker``: tracking never stops a stage once it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from src.finetune.errors import Pruned
from src.finetune.params import Params
from src.finetune.tracking.base import SafeTracker, Status, Tracker
from src.finetune.tracking.recording import RecordingTracker


def _mlflow(stage: str, params: Params, logged_params: tuple[str, ...]) -> Tracker:
    from src.finetune.tracking.mlflow import open_stage_tracker  # MLflow loads in seconds

    return open_stage_tracker(stage, params, logged_params)


def _none(stage: str, params: Params, logged_params: tuple[str, ...]) -> Tracker:
    return RecordingTracker(stage, params.select(logged_params))


# params.yaml's ``tracker`` -> opens a stage's tracker, or raises PipelineError in one line.
TRACKERS: dict[str, Callable[[str, Params, tuple[str, ...]], Tracker]] = {
    "mlflow": _mlflow,
    "none": _none,
}


@contextlib.contextmanager
def track_stage(
    stage: str, params: Params, logged_params: tuple[str, ...], enabled: bool = True
) -> Iterator[SafeTracker]:
    """The stage's tracker for the duration of the block, closed with its outcome.

    A failing or interrupted stage marks its runs FAILED or KILLED, so no run is left
    RUNNING. Not ``enabled`` (a worker other than the chief): nothing is logged.
    """
    opener = TRACKERS[params.tracker] if enabled else _none
    tracker = SafeTracker(opener(stage, params, logged_params))
    status = Status.FAILED
    try:
        yield tracker
        status = Status.FINISHED
    except (KeyboardInterrupt, Pruned):  # stopped on purpose, not failed
        status = Status.KILLED
        raise
    finally:
        tracker.close(status)


__all__ = ["TRACKERS", "RecordingTracker", "SafeTracker", "Status", "Tracker", "track_stage"]
