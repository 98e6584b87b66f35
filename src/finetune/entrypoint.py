"""How a stage or a tool runs as a process: one clear line and a non-zero exit instead of a
traceback, clean stops on signals, and a quiet start.

- A ``PipelineError`` is a problem the user can fix; its message says how.
- A full disk, a read-only output or a missing permission is named by its path, and so is
  any other path the operating system refuses (too long, a directory where a file belongs).
- SIGTERM (``docker stop``, Slurm, Kubernetes) and SIGINT (Ctrl-C) end the stage as a kill
  would, but cleanly: the per-epoch backup is kept for the next run to resume from, the
  tracker's runs are marked KILLED and no half-written output is left.
- A stage whose ``dvc`` process is gone (killed, or its terminal closed) stops the same way,
  rather than training on unsupervised: DVC does not pass signals on to its stages.
- TensorFlow's C++ start-up notices are filtered out of stderr (see ``quiet_tensorflow``).
- A stage or a tool that finished ends its process without the interpreter's teardown (see
  ``run_process`` and ``exit_without_teardown``): DVC waits for it, at every stage of every
  run, and so does whoever runs the tool (``src.predict`` on one image).
"""

from __future__ import annotations

import atexit
import errno
import importlib.abc
import importlib.util
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import NoReturn

import psutil

from src.finetune.environment import dvc_parent
from src.finetune.errors import PipelineError

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
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The stage was asked to stop (SIGTERM, SIGINT, or its ``dvc`` process is gone)."""


def run_stage(name: str, main: Callable[[], None], resumable: bool = False) -> None:
    """Run a stage's (or a tool's) main with the behaviour the module docstring describes; a
    ``resumable`` stage (a training phase) says that its next run resumes."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", force=True)
    quiet_tensorflow()
    quiet_libraries()
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


def run_process(name: str, main: Callable[[], None], resumable: bool = False) -> NoReturn:
    """``run_stage`` as the whole life of a stage's or a tool's process: once ``main`` has
    returned, the process ends at once (``exit_without_teardown``). Only a module's
    ``__main__`` calls this: tests call ``run_stage`` in their own process."""
    run_stage(name, main, resumable)
    exit_without_teardown(0)


def exit_without_teardown(code: int = 0) -> NoReturn:
    """End the process as a normal exit would, minus the interpreter's teardown.

    Tearing TensorFlow, Keras and MLflow down module by module takes 1 to 2.5 s on 2 cores
    (about 1 s for a stage without TensorFlow), after every output is written; DVC waits
    for it before the next stage starts. What a normal exit does that anything depends on
    still happens, in its order: thread pools are told to stop and the threads that are not
    daemons are joined, the ``atexit`` handlers run (logging's flush, the libraries' own,
    ``weakref.finalize``), the standard streams are flushed. CPython offers no public call
    for the first two; ``threading._shutdown`` and ``atexit._run_exitfuncs`` are what its
    own shutdown calls (``Py_FinalizeEx``).
    """
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # closed, or its reader went away
            stream.flush()
    os._exit(code)


# Libraries that log, with a traceback, the clean-up a stop breaks: the stop can land inside
# a tracking store's database call, and SQLAlchemy then logs that closing the cursor failed.
STOP_NOISE_LOGGERS = ("sqlalchemy",)


class _HeldStops:
    """The main thread's ``stops_held`` blocks: how deep, and the stop that waits for them."""

    depth = 0
    waiting: signal.Signals | None = None


@contextmanager
def stops_held() -> Iterator[None]:
    """A stop signal that arrives inside the block ends the stage at the block's end.

    For calls that must not be cut in half: a tracking store's transaction. Stopped inside
    one, SQLite keeps the cut connection's write lock, and marking the runs KILLED then waits
    for that lock for ever: the stage lives on after a `docker stop`. A second stop inside
    the block does not wait. Only the main thread, where signal handlers run, holds stops.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _HeldStops.depth += 1
    try:
        yield
    finally:
        _HeldStops.depth -= 1
        if _HeldStops.depth == 0 and _HeldStops.waiting is not None:
            signum, _HeldStops.waiting = _HeldStops.waiting, None
            raise Interrupted(f"stopped by {signum.name}")  # the stop outranks an error


def stop_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP (a closed terminal) raise ``Interrupted`` in the main
    thread, so cleanup runs; inside ``stops_held``, at the end of the block. The stop's one
    line is what the user gets: what it breaks inside a library on the way out
    (``STOP_NOISE_LOGGERS``) is not logged."""

    def interrupt(signum: int, frame: object) -> None:
        for name in STOP_NOISE_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if _HeldStops.depth and _HeldStops.waiting is None:
            _HeldStops.waiting = signal.Signals(signum)
            return
        _HeldStops.waiting = None
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
    dvc = dvc_parent()
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


# --- a quiet TensorFlow -----------------------------------------------------------------------

STARTUP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\] .*(kernel driver|No such file)"
)


def quiet_tensorflow() -> None:
    """Filter TensorFlow's C++ start-up notices out of stderr, once, before it is imported.

    When TensorFlow loads, its C++ core writes notices straight to the process's stderr
    before its logging can be configured, so ``TF_CPP_MIN_LOG_LEVEL`` stops only some of
    them: that oneDNN is on, that no CUDA driver was found, which CPU instructions the build
    does not use, and ``failed call to cuInit`` when it probes for a GPU on a machine without
    one. They read like errors and bury the stage's own log. So the first import of
    ``tensorflow`` (and its probe of the devices) runs with stderr captured, and every
    captured line that is not one of those notices is passed on: a real error still shows.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())


# What LiteRT's converter and interpreter write to stderr from C++ on every int8 export and
# every file opened: settings echoed back and the CPU delegate's creation, never a problem.
LITERT_NOTICES = re.compile(
    r"^fully_quantize: \d+, inference_type: \d+"
    r"|Created TensorFlow Lite XNNPACK delegate for CPU"
    r"|flatbuffer_export\.cc:\d+\] Skipping runtime version metadata"
)


def quiet_libraries() -> None:
    """Keep other libraries' routine notices out of the stage's log, so that what remains
    (the stage's lines, and any real warning) is read: MLflow's INFO lines and the download
    progress bars for the models it logs, tf2onnx's NumPy deprecation notice, and
    TensorFlow's notice that ``tf.lite.Interpreter`` is deprecated, which its own int8
    quantiser calls (the runtimes use LiteRT's interpreter)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO: what it is doing
    warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")


@contextmanager
def native_notices_filtered(notices: re.Pattern[str] = STARTUP_NOTICES) -> Iterator[None]:
    """Capture what is written to stderr (the file descriptor, as C++ writes it) and pass on
    the lines that are not ``notices`` (TensorFlow's start-up notices by default)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not notices.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tensorflow`` once, and loads it (and probes the devices) with the notices
    filtered; every other import is left to the usual finders."""

    def find_spec(self, name: str, path: object, target: object = None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with native_notices_filtered():
            self._loader.exec_module(module)
            module.config.list_physical_devices()  # the CUDA probe, once, now
