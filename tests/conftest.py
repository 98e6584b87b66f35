"""Fixtures that build tiny data: a generated archive in the official CIFAR-10 layout and a
params file that points the pipeline at it with random weights and few epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from src.finetune.sample import write_archive

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
TINY_TRAIN, TINY_TEST = 200, 60
# Variables that would point tracking elsewhere, as DVC or a user may have set them.
STAGE_ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME")


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


def write_params(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """The project's params.yaml with dotted-key overrides, comments kept."""
    yaml = YAML()
    tree = yaml.load((ROOT / "params.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node[section]
        node[key] = value
    with path.open("w") as handle:
        yaml.dump(tree, handle)
    return path


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a tiny generated archive in the official layout."""
    path = tmp_path_factory.mktemp("archive") / "cifar-10-sample.tar.gz"
    return path, write_archive(path, TINY_TRAIN, TINY_TEST, seed=1)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with its own MLflow store, as a stage would see it."""
    monkeypatch.chdir(tmp_path)
    for name in STAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path
