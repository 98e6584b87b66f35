"""How a stage ends: one clear line and a non-zero exit instead of a traceback.

- A ``PipelineError`` is a problem the user can fix; its message says how.
- A full disk, a read-only output or a missing permission is named by its path, and so is
  any other path the operating system refuses (too long, a directory where a file belongs).
- SIGTERM (``docker stop``, Slurm, Kubernetes) and SIGINT (Ctrl-C) end the stage as a kill
  would, but cleanly: the per-epoch backup is kept for the next run to resume from, the MLflow
  runs are marked KILLED and no half-written output is left.
- A stage whose ``dvc`` process is gone (killed, or its terminal closed) stops the same way,
  rather than training on unsupervised: DVC does not pass signals on to its stages.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import psutil

PARENT_POLL_S = 2.0
EXIT_INTERRUPTED = 130
# OS errors that say something about the place written to, which the user can fix.
DISK_ERRORS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only; make it writable or write elsewhere",
    errno.EACCES: "permission denied; make it writable",
    errno.EPERM: "operation not permitted; check its permissions",
}


class PipelineError(Exception):
    """A problem the user can fix (a param, a file, the network); the message says how."""


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """What an error says, for a one-line message: its first line (or its type), cut short."""
    line = (str(error).splitlines() or [type(error).__name__])[0] or type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Interrupted(KeyboardInterrupt):
    """The stage was asked to stop (SIGTERM, SIGINT, or its ``dvc`` process is gone)."""


def run_stage(name: str, main: Callable[[], None], resumable: bool = False) -> None:
    """Run a stage's main with the behaviour the module docstring describes; a
    ``resumable`` stage (a training phase) says that its next run resumes."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", force=True)
    stop_on_signals()
    watch_dvc_parent()
    try:
        main()
    except PipelineError as error:
        print(f"error: {name}: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as interrupt:
        why = str(interrupt) or "interrupted"
        then = (
            "the last finished epoch is backed up: run `dvc repro` again to resume"
            if resumable
            else "run it again"
        )
        print(f"error: {name}: {why}; {then}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as error:
        if error.errno in DISK_ERRORS:
            where = error.filename or "an output"
            problem = f"cannot write {where}: {DISK_ERRORS[error.errno]}"
        elif error.filename is not None:  # a path that cannot be used: too long, a directory
            problem = f"cannot use {error.filename!s:.200}: {error.strerror}; check the path"
        else:
            raise
        print(f"error: {name}: {problem}", file=sys.stderr)
        sys.exit(1)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def stop_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP (a closed terminal) raise ``Interrupted`` in the main
    thread, so cleanup runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)


def exit_on_signals_while_starting(stage: str) -> None:
    """Until ``run_stage`` takes over, a stop signal ends the process at once, in one line.

    Loading TensorFlow takes seconds; nothing is open or written yet, so there is nothing to
    clean up, and Python's default (a KeyboardInterrupt traceback, or a silent death on
    SIGTERM) would be the only thing the user saw.
    """

    stderr = os.dup(2)  # TensorFlow's import runs with file descriptor 2 captured

    def leave(signum: int, frame: object) -> None:
        why = signal.Signals(signum).name
        message = f"error: {stage}: stopped by {why} while starting; run it again\n"
        os.write(stderr, message.encode())
        os._exit(EXIT_INTERRUPTED)

    for signum in STOP_SIGNALS:
        signal.signal(signum, leave)


def watch_dvc_parent() -> None:
    """If a ``dvc`` process started this stage, send ourselves SIGTERM once it is gone."""
    me = psutil.Process()
    dvc = next((p for p in me.parents() if is_dvc(p)), None)
    if dvc is None:
        return

    def alive() -> bool:
        try:
            return dvc.is_running() and dvc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def watch() -> None:
        while alive():
            time.sleep(PARENT_POLL_S)
        logging.getLogger(__name__).warning("dvc (process %d) is gone; stopping", dvc.pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-dvc", daemon=True).start()


def is_dvc(process: psutil.Process) -> bool:
    """Whether ``process`` is a ``dvc`` command (``dvc ...`` or ``python -m dvc ...``)."""
    try:
        command = process.cmdline()
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    if command[1:3] == ["-m", "dvc"]:
        return True
    return any(os.path.basename(part) in ("dvc", "dvc.exe") for part in command[:2])
