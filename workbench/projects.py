"""Scratch copies of the project, for end-to-end tests and benchmarks."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

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
    "recipes",
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
