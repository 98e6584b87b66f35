"""Fixtures that build tiny data: a generated archive in the official CIFAR-10 layout and a
params file that points the pipeline at it with random weights and few epochs."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from src.finetune.files import copy_files
from src.finetune.sample import write_archive

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
TINY_TRAIN, TINY_TEST = 200, 60
# Variables that would point tracking elsewhere, as DVC or a user may have set them.
STAGE_ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME")
# What a clone of the project holds, for end-to-end tests in a temporary git repository.
PROJECT_FILES = (
    "src",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
)


def tiny_overrides(archive: str, sha256: str) -> dict[str, Any]:
    return {
        "data.archive": archive,
        "data.sha256": sha256,
        "model.weights": "none",
        "phase1.epochs": 2,
        "phase1.batch_size": 32,
        "phase2.epochs": 2,
        "phase2.batch_size": 32,
        "phase2.lr": 1e-3,
    }


REMOVE = object()  # as an override's value: delete the key


def write_params(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """The project's params.yaml with dotted-key overrides, comments kept."""
    yaml = YAML()
    tree = yaml.load((ROOT / "params.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node[section]
        if value is REMOVE:
            del node[key]
        else:
            node[key] = value
    with path.open("w") as handle:
        yaml.dump(tree, handle)
    return path


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a tiny generated archive in the official layout."""
    path = tmp_path_factory.mktemp("archive") / "cifar-10-sample.tar.gz"
    return path, write_archive(path, TINY_TRAIN, TINY_TEST, seed=1)


def stage_args(stage: str) -> list[str]:
    """Exactly the arguments the stage's command in dvc.yaml passes to its entry point."""
    return shlex.split(PIPELINE["stages"][stage]["cmd"])[3:]


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, sample_archive) -> Path:
    """A directory where all five stages ran in-process, in order, on tiny data."""
    from src.stages import evaluate, phase1_extract, phase2_finetune, prepare, report

    root = tmp_path_factory.mktemp("stages")
    archive, sha256 = sample_archive
    write_params(root / "params.yaml", tiny_overrides(str(archive), sha256))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in STAGE_ENV:
            patch.delenv(name, raising=False)
        for stage in (prepare, phase1_extract, phase2_finetune, evaluate, report):
            stage.main(stage_args(stage.STAGE))
    return root


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with its own MLflow store, as a stage would see it."""
    monkeypatch.chdir(tmp_path)
    for name in STAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


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


def make_project(root: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A committed git + DVC repository of the project on a tiny generated archive."""
    copy_files(PROJECT_FILES, ROOT, root)
    sha256 = write_archive(root / "data/raw/sample.tar.gz", TINY_TRAIN, TINY_TEST, seed=2)
    write_params(
        root / "params.yaml", tiny_overrides("data/raw/sample.tar.gz", sha256) | (overrides or {})
    )
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny pipeline")
    return root


def local_store(repo: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def runs_by_execution(client: MlflowClient) -> list[list[Run]]:
    """The pipeline's runs grouped by execution, oldest first."""
    experiment = client.get_experiment_by_name("cifar10-finetune")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    executions: dict[str, list[Run]] = {}
    for mlflow_run in found:
        executions.setdefault(mlflow_run.data.tags["pipeline.execution"], []).append(mlflow_run)
    return list(executions.values())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` with its own SQLite store, serving artifacts, on a free port."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.store.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}",
            "--artifacts-destination", str(self.store / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        with (self.store / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                command, env=command_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.store / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(
            f"mlflow server did not start:\n{(self.store / 'server.log').read_text()}"
        )

    def stop(self) -> None:
        """Kill the server and its workers, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
