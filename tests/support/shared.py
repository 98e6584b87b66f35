"""What one test run builds once for all its xdist workers (pytest-xdist's FileLock recipe):
the first worker that needs it builds it, the others wait for it and read the same folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def built_once(
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
    name: str,
    build: Callable[[Path], None],
) -> Path:
    """The folder ``name`` of this test run, that ``build`` filled, once for every worker."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the run's folder, above every worker's own
    root = shared / name
    done = shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)  # an earlier worker died half-way
            build(root)
            done.touch()
    return root
