"""The one exception the user can act on, and how any error is said in one line."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix (a param, a file, the network); the message says how."""


class Pruned(PipelineError):
    """A tuning study stopped this trial on purpose: not a failure, its runs end KILLED."""


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """What an error says, for a one-line message: its first line (or its type), cut short."""
    line = (str(error).splitlines() or [type(error).__name__])[0] or type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
