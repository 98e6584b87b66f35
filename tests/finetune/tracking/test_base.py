"""The Tracker interface's wrapper and null implementation, with no store at all."""

import dataclasses
import logging
import os
import signal
from pathlib import Path

import pytest

from src.finetune.params import Phase
from src.finetune.tracking import TRACKERS, RecordingTracker, SafeTracker, Status, track_stage
from src.finetune.tracking.studies import RecordingStudyTracker
from tests.support.params import project_params
from tests.support.training import frame


class Refusing(RecordingTracker):
    """Refuses one method; ``unreachable`` says whether it is out of reach altogether."""

    def __init__(self, method: str, out_of_reach: bool) -> None:
        super().__init__()
        self.method, self.out_of_reach = method, out_of_reach

    def log_results(self, results, comparison=False):
        if self.method == "log_results":
            raise ConnectionError("the server went away")
        super().log_results(results, comparison)

    def close(self, status):
        if self.method == "close":
            raise RuntimeError("cannot close")
        super().close(status)

    def unreachable(self, error):
        return self.out_of_reach


def test_a_refused_call_is_one_warning_and_the_next_calls_still_go_through(caplog):
    tracker = SafeTracker(Refusing("log_results", out_of_reach=False))
    with caplog.at_level(logging.WARNING):
        tracker.log_results({"a": 1.0})
        tracker.log_epoch(1, {"loss": 0.5})
    assert "recording: log results failed (the server went away); the stage goes on" in caplog.text
    assert not tracker.offline and tracker.inner.epochs == {1: {"loss": 0.5}}


def test_a_tracker_out_of_reach_is_switched_off_once_and_says_how_to_relog(caplog):
    tracker = SafeTracker(Refusing("log_results", out_of_reach=True))
    with caplog.at_level(logging.WARNING):
        tracker.log_results({"a": 1.0})
        tracker.log_epoch(1, {"loss": 0.5})
        tracker.close(Status.FINISHED)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "python -m src.relog" in warnings[0]
    assert tracker.offline and tracker.inner.epochs == {}
    assert tracker.inner.status == Status.FINISHED, "closing is tried even when offline"


def test_a_tracker_that_cannot_close_is_a_warning(caplog):
    tracker = SafeTracker(Refusing("close", out_of_reach=False))
    with caplog.at_level(logging.WARNING):
        tracker.close(Status.KILLED)
    assert "the runs could not be closed (cannot close)" in caplog.text


def test_the_recording_tracker_keeps_every_call_in_order(tmp_path):
    tracker = RecordingTracker("evaluate")
    tracker.link_inputs([Path("data/prepared")])
    tracker.log_epoch(1, {"loss": 1.0})
    tracker.log_epoch(1, {"kept": 1.0})
    tracker.log_results({"a": 1.0})
    tracker.log_results({"a": 2.0, "b": 3.0})
    tracker.log_execution(frame(1, 2).assign(phase=1), {Phase.EXTRACT: 2}, None)
    tracker.log_artifacts([tmp_path / "x"], comparison=True)
    assert tracker.results == {"a": 2.0, "b": 3.0}
    assert tracker.epochs == {1: {"loss": 1.0, "kept": 1.0}}
    assert tracker.called("log_artifacts") == [((tmp_path / "x",), True)]
    assert [name for name, _ in tracker.calls] == [
        "link_inputs", "log_epoch", "log_epoch", "log_results", "log_results",
        "log_execution", "log_artifacts",
    ]  # fmt: skip


@pytest.mark.parametrize("outcome", ["finished", "failed", "interrupted"])
def test_track_stage_closes_the_runs_with_the_stage_outcome(workdir, outcome):
    params = project_params().model_copy(update={"tracker": "none"})
    expected = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}[outcome]
    raised = {"finished": None, "failed": RuntimeError, "interrupted": KeyboardInterrupt}[outcome]
    with pytest.raises(raised) if raised else _nothing(), track_stage("x", params, ()) as tracker:
        if raised:
            raise raised("stop")
    assert tracker.inner.status == expected
    assert not (workdir / "mlflow.db").exists()


def test_every_tracker_the_schema_allows_has_an_implementation():
    from src.finetune.params import Params

    allowed = Params.model_fields["tracker"].annotation.__args__
    assert set(allowed) == set(TRACKERS)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class StoppedMidCall(RecordingTracker, RecordingStudyTracker):
    """Sends this process SIGTERM half-way through each call, as `docker stop` may land."""

    def __init__(self) -> None:
        RecordingTracker.__init__(self)
        self.ended: list[str] = []

    def log_results(self, results, comparison=False):
        os.kill(os.getpid(), signal.SIGTERM)
        self.ended.append("log_results")

    def trial_finished(self, number, state):
        os.kill(os.getpid(), signal.SIGTERM)
        self.ended.append("trial_finished")


def test_a_stop_during_a_tracker_call_comes_once_the_call_has_ended(stopping):
    from src.finetune.entrypoint import Interrupted
    from src.finetune.tracking.studies import SafeStudyTracker

    inner = StoppedMidCall()
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        SafeTracker(inner).log_results({"accuracy": 0.5})
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        SafeStudyTracker(inner).trial_finished(3, "complete")
    assert inner.ended == ["log_results", "trial_finished"]


def test_track_stage_marks_the_runs_killed_when_a_stop_comes_while_they_open(
    workdir, stopping, monkeypatch
):
    from src.finetune import tracking
    from src.finetune.entrypoint import Interrupted

    opened = []

    def opening(stage, params, logged):
        os.kill(os.getpid(), signal.SIGTERM)
        opened.append(RecordingTracker(stage, {}))
        return opened[-1]

    backend = dataclasses.replace(tracking.TRACKERS["none"](), stage=opening)
    monkeypatch.setitem(tracking.TRACKERS, "none", lambda: backend)
    params = project_params().model_copy(update={"tracker": "none"})
    with pytest.raises(Interrupted), track_stage("x", params, ()):
        raise AssertionError("the stage went on after the stop")
    assert opened[0].status == "KILLED"
