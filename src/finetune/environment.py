"""Where a stage runs: the repository, the ``dvc`` process that started it, the execution it
belongs to and the commit it runs. The one place that asks the process tree, git and DVC's
environment variables."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

# What `python -m src.tune` tells the stages of a trial (see ``study_trial``).
STUDY_STORAGE = "FINETUNE_STUDY_STORAGE"
STUDY_NAME = "FINETUNE_STUDY"
STUDY_TRIAL = "FINETUNE_STUDY_TRIAL"
STUDY_RUN = "FINETUNE_STUDY_RUN"
# And what the stage that stops a pruned trial tells it back: the trial's user attribute
# holding the epoch it stopped after.
PRUNED_AT = "pruned_at_epoch"
STOPPED_BECAUSE = "stopped_because"  # why the stage stopped a trial early, in words
# TensorFlow's two thread pools, each sized by default to every core of the machine.
TENSORFLOW_THREADS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


PR_SET_PDEATHSIG = 1
# Looked up here, in the parent: the child calls it between fork and exec, where looking a
# symbol up could wait on a lock another thread held at the fork. Linux's C library only.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


@dataclass(frozen=True)
class StudyTrial:
    """The tuning trial a pipeline execution runs as: the Optuna study (its storage URL and
    name), the trial's number and the study's MLflow run, if it has one."""

    storage: str
    study: str
    number: int
    mlflow_run: str | None = None

    def environ(self) -> dict[str, str]:
        """The variables that hand this trial to the stages of ``dvc repro``."""
        return {
            STUDY_STORAGE: self.storage,
            STUDY_NAME: self.study,
            STUDY_TRIAL: str(self.number),
        } | ({STUDY_RUN: self.mlflow_run} if self.mlflow_run else {})


def study_trial() -> StudyTrial | None:
    """The trial this process runs for, when `python -m src.tune` started its pipeline."""
    names = (STUDY_STORAGE, STUDY_NAME, STUDY_TRIAL)
    if not all(os.environ.get(name) for name in names):
        return None
    return StudyTrial(
        os.environ[STUDY_STORAGE],
        os.environ[STUDY_NAME],
        int(os.environ[STUDY_TRIAL]),
        os.environ.get(STUDY_RUN) or None,
    )


def repository_root() -> Path:
    """The DVC repository root; DVC points DVC_ROOT at it, also for queued experiments."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def experiment_name() -> str | None:
    """The DVC experiment this execution runs as (``dvc exp run -n``), if any."""
    return os.environ.get("DVC_EXP_NAME") or None


def is_dvc(process: psutil.Process) -> bool:
    """Whether ``process`` is a ``dvc`` command (``dvc ...`` or ``python -m dvc ...``)."""
    try:
        command = process.cmdline()
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    if command[1:3] == ["-m", "dvc"]:
        return True
    return any(os.path.basename(part) in ("dvc", "dvc.exe") for part in command[:2])


def dvc_parent() -> psutil.Process | None:
    """The ``dvc`` process that started this one (``dvc repro``, ``dvc exp run``), if any."""
    return next((p for p in psutil.Process().parents() if is_dvc(p)), None)


def process_id(process: psutil.Process) -> str:
    """host-pid-start: names a process uniquely, even after its pid is reused."""
    return f"{socket.gethostname()}-{process.pid}-{int(process.create_time())}"


def this_process() -> str:
    """``process_id`` of this process."""
    return process_id(psutil.Process())


def execution_id() -> str:
    """Identify the ``dvc`` process that runs this stage; without one, this process."""
    return process_id(dvc_parent() or psutil.Process())


def is_alive(identity: str) -> bool:
    """Whether the process named by ``process_id`` still runs; other hosts' count as alive."""
    parts = identity.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return True
    _, pid, started = parts
    try:
        return int(psutil.Process(int(pid)).create_time()) == int(started)
    except (psutil.NoSuchProcess, ValueError):
        return False


def share_of_cores(processes: int) -> dict[str, str]:
    """TensorFlow's thread counts for one of ``processes`` processes training side by side
    on this machine: its cores divided among them, at least one each, less the counts the
    user set (theirs win). By default each TensorFlow sizes its pools to every core, and side
    by side their threads spin for the cores the others hold (measured on the test suite:
    tests/conftest.py). For the children's environment: a process's own pools are sized
    when TensorFlow starts."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, processes)))
    return {name: threads for name in TENSORFLOW_THREADS if name not in os.environ}


def die_with_parent() -> None:
    """Run in a child between fork and exec (``Popen(preexec_fn=...)``): the kernel sends it
    SIGTERM when the process that started it dies, however it dies (SIGKILL too), so a
    killed tuning worker's `dvc repro` stops rather than training on, and a killed UI's
    server does not live on holding its port. Linux only; elsewhere nothing."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def experiment_baseline() -> str | None:
    """The commit a `dvc exp run` started from, when this process runs under one."""
    return os.environ.get("DVC_EXP_BASELINE_REV") or None


def git_commit() -> str | None:
    """The commit the code comes from: the experiment's baseline under ``dvc exp run``."""
    if rev := experiment_baseline():
        return rev
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
    except OSError:  # no git: DVC works without it
        return None
    return result.stdout.strip() or None


def rerun(stage: str = "", *, force: bool = False) -> str:
    """The DVC command that (re)makes a stage's outputs, as error messages give it:
    ``dvc repro --force prepare``."""
    return (
        " ".join(["`dvc repro", *(["--force"] if force else []), *([stage] if stage else [])]) + "`"
    )


def project_sources() -> list[Path]:
    """The project's Python files this process has imported: the code a stage runs."""
    root = Path(__file__).resolve().parents[1]  # src/
    files = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    return sorted(
        {Path(f).resolve() for f in files if f and Path(f).resolve().is_relative_to(root)}
    )
