"""Saving a pipeline execution as a named DVC experiment, for the tools that run the pipeline
on params of their own (the demo, the tuner).

They run ``dvc repro`` and then ``dvc exp save`` rather than ``dvc exp run``: an experiment run
first checks out the outputs of the last commit, and a fresh clone has none (no dvc.lock),
which DVC warns about output by output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

from src.finetune.errors import PipelineError

# What a run writes that git may not track yet and an experiment must hold: the lock file and
# the metrics (kept in git, not in DVC's cache); DVC's .gitignore files are added too.
EXPERIMENT_FILES = {"dvc.lock", "reports/metrics.json"}


def run_command(
    command: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    output: IO[str] | int | None = None,
) -> None:
    """Run ``command``, its output to ``output`` (a file, ``subprocess.DEVNULL``) or ours; a
    failure is one line naming it (its own output says why)."""
    finished = subprocess.run(
        command, cwd=cwd, env=env, stdout=output, stderr=output and subprocess.STDOUT, check=False
    )
    if finished.returncode:
        raise PipelineError(
            f"`{' '.join(command)}` failed (exit {finished.returncode}); its output says why"
        )


def git(cwd: Path | None, *arguments: str) -> str:
    """What a git command prints; its failure is one line naming it and git's last words."""
    finished = subprocess.run(
        ["git", *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )
    if finished.returncode:
        reason = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"`git {' '.join(arguments[:2])}` failed in {cwd or '.'}: {reason}")
    return finished.stdout


def untracked_pipeline_files(cwd: Path | None = None) -> list[str]:
    """The files of ``EXPERIMENT_FILES`` and DVC's .gitignore files that git does not track."""
    listed = git(cwd, "ls-files", "--others", "--exclude-standard").split()
    return [path for path in listed if path in EXPERIMENT_FILES or Path(path).name == ".gitignore"]


def save_experiment(
    dvc: str,
    name: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    output: IO[str] | int | None = None,
) -> None:
    """Save the workspace's last execution as the experiment ``name`` (replacing one of that
    name), untracked pipeline files included."""
    included = [
        arg for path in untracked_pipeline_files(cwd) for arg in ("--include-untracked", path)
    ]
    run_command([dvc, "exp", "save", "--force", "-n", name, *included], cwd, env, output)
