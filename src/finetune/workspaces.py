"""Where the tools that run the pipeline on params of their own (a tuning worker's trials,
the demo) run it: a DVC workspace of their own, so that they never write the user's
params.yaml, git index or outputs, nor each other's files, and share the repository's DVC
cache.

A workspace is a git clone of the repository at its current commit, in a folder under
``.dvc/tmp/`` (ignored by git and DVC, like DVC's own temporary experiments):
``.dvc/tmp/tune/<study>/worker-<k>`` for a tuning worker, ``.dvc/tmp/demo/worker-<k>`` for
the demo. It has:
- the repository's DVC cache as its cache, so a stage whose params and inputs a run does not
  change comes from DVC's run cache (a phase-2 search trains phase 1 once);
- a base params tree (a study: the user's params.yaml, uncommitted edits included);
- the inputs git does not carry (an image folder, a raw archive, a weights file) linked in
  before every run, as the repository holds them then (``bring_inputs``).

A run writes its params, runs ``dvc repro``, saves the result as a named experiment and
pushes it to the repository, where ``dvc exp show`` lists it and ``dvc exp apply`` brings it
back. Each workspace is held by one process at a time (a file lock that dies with it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from src.finetune.environment import die_with_parent
from src.finetune.errors import PipelineError
from src.finetune.experiments import git, run_command, save_experiment
from src.finetune.params import Params, apply_overrides, write_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """A worker's clone of the repository (``path``) and the repository it serves (``root``)."""

    root: Path
    path: Path
    index: int  # worker-<index>
    base_params: dict[str, Any]
    lock: FileLock


def study_folder(root: Path, study: str) -> Path:
    return root / ".dvc" / "tmp" / "tune" / study


def demo_folder(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "demo"


def claim_workspace(folder: Path, root: Path, base_params: dict[str, Any], dvc: str) -> Workspace:
    """The first workspace in ``folder`` no other process holds, made ready for runs."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1024):
        lock = FileLock(folder / f"worker-{index}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        path = folder / f"worker-{index}"
        _sync(root, path, dvc)
        return Workspace(root, path, index, base_params, lock)
    raise PipelineError(f"{folder}: 1,024 processes already hold a workspace there")


def _sync(root: Path, path: Path, dvc: str) -> None:
    """A clone at the repository's commit, its cache the repository's, its untracked inputs
    linked in."""
    commit = git(root, "rev-parse", "HEAD").strip()
    if not (path / ".git").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        git(root, "clone", "--quiet", "--shared", "--no-checkout", str(root), str(path))
    git(path, "fetch", "--quiet", str(root), commit)
    git(path, "checkout", "--quiet", "--force", "--detach", commit)
    # A killed worker's DVC lock and read-write lock: this worker holds the workspace now.
    for stale in ("lock", "rwlock"):
        (path / ".dvc" / "tmp" / stale).unlink(missing_ok=True)
    cache = subprocess.run(
        [dvc, "cache", "dir"], cwd=root, capture_output=True, text=True, check=False
    ).stdout.strip()
    if cache:
        run_command(
            [dvc, "config", "--local", "cache.dir", cache], cwd=path, output=subprocess.DEVNULL
        )


def bring_inputs(workspace: Workspace, params: Params) -> list[str]:
    """The inputs params.yaml names that git does not carry (the image folder, the raw
    archives, a weights file), as the repository holds them now, linked (or copied) into the
    workspace in place of what an earlier run left there; returns a line saying which.

    Called before every run: a trial trains on the images the user has when it starts (a
    class added or half deleted since the study began, a weights file replaced), never on
    a copy its workspace kept, and a folder git tracks a file of (data/images/README.md) is
    still brought whole.
    """
    named = [params.data.folder, params.data.archive, "data/raw", params.model.weights]
    brought = []
    for name in dict.fromkeys(filter(None, named)):
        source, target = workspace.root / name, workspace.path / name
        if Path(name).is_absolute() or not source.exists() or source.resolve() == target:
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=_link_or_copy, symlinks=True)
            files = sum(1 for path in target.rglob("*") if path.is_file())
            brought.append(f"{name} ({files:,} files)")
        else:
            _link_or_copy(source, target)
            brought.append(f"{name} ({target.stat().st_size:,} bytes)")
    return brought


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def run_experiment(
    workspace: Workspace,
    overrides: dict[str, Any],
    experiment: str,
    dvc: str,
    env: dict[str, str],
    log_path: Path | None = None,
    header: str = "",
) -> None:
    """Run the pipeline with ``overrides`` on the base params and save it as ``experiment``
    in the repository; its output goes to ``log_path``, or with none to ours (the stages'
    lines only: DVC's own, about `git add` and `dvc push`, speak of the workspace, not of
    the user's repository), after ``header``. Raises ``PipelineError`` when a stage fails
    (or is pruned)."""
    write_params(workspace.path / "params.yaml", apply_overrides(workspace.base_params, overrides))
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") if log_path else contextlib.nullcontext() as output:
        if output and header:
            output.write(f"{header}\n")
            output.flush()
        finished = subprocess.run(
            [dvc, "repro", *([] if log_path else ["--quiet"])],
            cwd=workspace.path,
            env=env,
            stdout=output,
            stderr=output and subprocess.STDOUT,
            preexec_fn=die_with_parent,
            check=False,
        )
        if finished.returncode:
            where = f"see {log_path}" if log_path else "the stage's lines above say why"
            raise PipelineError(f"`dvc repro` failed (exit {finished.returncode}); {where}")
        quiet = output or subprocess.DEVNULL
        save_experiment(dvc, experiment, workspace.path, env, quiet)
        run_command(
            [dvc, "exp", "push", "--no-cache", "--force", "origin", experiment],
            workspace.path,
            env,
            quiet,
        )
