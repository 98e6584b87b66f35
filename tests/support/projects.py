"""Scratch copies of the project: committed git + DVC repositories on tiny data."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.support.commands import run
from tests.support.images import image_folder
from tests.support.params import ROOT, TINY_TEST, TINY_TRAIN, tiny_overrides, write_params
from tests.support.sample import write_archive

# What a clone of the project holds, for end-to-end tests in a temporary git repository;
# params.yaml is written from the committed one (see ``support.params``).
PROJECT_FILES = (
    "src",
    "dvc.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
    "data/images/README.md",
)


def copy_files(names: Iterable[str], source: Path, target: Path) -> None:
    """Copy files and folders (without bytecode caches) from ``source`` to the same places
    under ``target``: a scratch copy of the project for end-to-end tests and benchmarks."""
    for name in names:
        origin, copy = source / name, target / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, copy)


def make_project(
    root: Path, overrides: dict[str, Any] | None = None, images_per_class: int = 0
) -> Path:
    """A committed git + DVC repository of the project on a tiny generated archive (and, with
    ``images_per_class``, a folder of real image files in data/images)."""
    copy_files(PROJECT_FILES, ROOT, root)
    if images_per_class:
        image_folder(root / "data/images", per_class=images_per_class)
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
