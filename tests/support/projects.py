"""Scratch copies of the project: committed git + DVC repositories on tiny data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.support.commands import run
from tests.support.images import image_folder
from tests.support.params import ROOT, TINY_TEST, TINY_TRAIN, tiny_overrides, write_params
from workbench.archives import write_archive
from workbench.projects import PROJECT_FILES, copy_files


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


def runs_by_execution(
    client: MlflowClient, experiment_name: str = "cifar10-finetune"
) -> list[list[Run]]:
    """The pipeline's runs grouped by execution, oldest first (the experiment's name is the
    data source's: cifar10-finetune for the tiny archive, images-finetune for a folder)."""
    experiment = client.get_experiment_by_name(experiment_name)
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    executions: dict[str, list[Run]] = {}
    for mlflow_run in found:
        executions.setdefault(mlflow_run.data.tags["pipeline.execution"], []).append(mlflow_run)
    return list(executions.values())
