"""What a tuning study tells an experiment tracker: one run per study, each trial's state, and
at the end the best trial, the study's settings and its files. Like ``Tracker``, a failing
call is one warning: tracking never stops a study."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.finetune.entrypoint import stops_held
from src.finetune.errors import first_line

log = logging.getLogger(__name__)


class StudyTracker(ABC):
    """The study's run (``run_id``, handed to each trial's pipeline to nest under) and what
    the tuner logs to it."""

    run_id: str | None = None

    @abstractmethod
    def trial_finished(self, number: int, state: str) -> None:
        """Tag the trial's runs with its state (complete, pruned, fail); close those a pruned
        or failed trial left running."""

    @abstractmethod
    def study_finished(
        self,
        settings: Mapping[str, Any],
        best: Mapping[str, Any],
        numbers: Mapping[str, float],
        files: Sequence[Path],
    ) -> None:
        """The study's settings, its best trial's params and value, its counts, its files."""


class RecordingStudyTracker(StudyTracker):
    """Logs nothing, records every call: ``tracker: none``, and tests."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def trial_finished(self, number: int, state: str) -> None:
        self.calls.append(("trial_finished", (number, state)))

    def study_finished(self, settings, best, numbers, files) -> None:
        self.calls.append(("study_finished", (dict(settings), dict(best), dict(numbers), files)))


class SafeStudyTracker(StudyTracker):
    """Any failing call of ``inner`` is one warning; the study goes on. A stop signal waits
    for the call under way to end, as ``SafeTracker``'s do."""

    def __init__(self, inner: StudyTracker) -> None:
        self.inner = inner
        self.run_id = inner.run_id

    def _call(self, method: str, *args: Any) -> None:
        try:
            with stops_held():
                getattr(self.inner, method)(*args)
        except Exception as error:  # tracking must never stop a study
            log.warning("tracking: %s failed (%s); the study goes on", method, first_line(error))

    def trial_finished(self, number: int, state: str) -> None:
        self._call("trial_finished", number, state)

    def study_finished(self, settings, best, numbers, files) -> None:
        self._call("study_finished", settings, best, numbers, files)
