"""A tracker backend that records, for the tests that show what the stages and tools tell a
tracker, whichever params.yaml names."""

from __future__ import annotations

from src.finetune.tracking import Backend, RecordingTracker
from src.finetune.tracking.studies import RecordingStudyTracker


def recording_backend(opened: list) -> Backend:
    """A ``Backend`` whose every opener records what it opened in ``opened``."""

    def stage(name, params, logged):
        opened.append(RecordingTracker(name, params.select(logged)))
        return opened[-1]

    def execution(params, execution, name, logged):
        opened.append(RecordingTracker(name, params.flat() if logged is None else
                                       params.select(logged)))  # fmt: skip
        return opened[-1]

    def study(params, name):
        opened.append(RecordingStudyTracker())
        return opened[-1]

    return Backend(
        stage=stage,
        execution=execution,
        study=study,
        workspace_env=lambda root: {"RECORDED_AT": str(root)},
        prepare=lambda params: opened.append(("prepared", params.mlflow_experiment)),
        location=lambda: "in memory",
    )
