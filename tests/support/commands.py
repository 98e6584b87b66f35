"""Real commands (dvc, git, mlflow, the stages) run as a user's shell would run them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.support.params import ROOT

PIPELINE = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
STAGES = tuple(PIPELINE["stages"])
# Variables that would point tracking elsewhere, as DVC or a user may have set them.
STAGE_ENV = (
    "MLFLOW_TRACKING_URI",
    "DVC_ROOT",
    "DVC_EXP_NAME",
    "FINETUNE_STUDY_STORAGE",
    "FINETUNE_STUDY",
    "FINETUNE_STUDY_TRIAL",
    "FINETUNE_STUDY_RUN",
)


def stage_module(name: str) -> Any:
    return importlib.import_module(f"src.stages.{name}")


def stage_args(name: str) -> list[str]:
    """The arguments the stage's declaration gives its command (dvc.yaml's, as a test checks)."""
    return stage_module(name).STAGE.arguments()


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: this venv on PATH, a git identity, local tracking."""
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    for name in STAGE_ENV:
        env.pop(name, None)
    return env | extra


def run(cwd: Path, *command: str, **env: str) -> str:
    """Run a real executable (dvc, git, mlflow); its output, or a failure showing it."""
    result = subprocess.run(
        command, cwd=cwd, env=command_env(**env), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def repro_and_commit(repo: Path, *targets: str, **env: str) -> str:
    """`dvc repro` (of ``targets`` and what they depend on, or of everything), then a commit
    of everything it wrote; its output."""
    output = run(repo, "dvc", "repro", *targets, **env)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "reproduced")
    return output


def start_repro(repo: Path, **popen: Any) -> subprocess.Popen:
    """`dvc repro` in ``repo``, running on: its output (stdout and stderr) in one text pipe."""
    return subprocess.Popen(
        ["dvc", "repro"],
        cwd=repo,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
