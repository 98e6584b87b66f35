"""Fixtures that build tiny data: a generated archive in the official CIFAR-10 layout, a
directory where the six stages ran on it (once for all workers), and an empty working
directory; and the order in which the test files are handed to the workers."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from src.finetune.environment import share_of_cores
from tests.support.commands import STAGE_ENV, stage_args
from tests.support.params import (
    TINY_TEST,
    TINY_TRAIN,
    project_params,
    tiny_overrides,
    write_params,
)
from tests.support.shared import built_once
from workbench.archives import write_archive

# The files that take minutes, slowest first (as `make test`'s slowest ten show them). They go
# first so that no worker starts one near the end while the other has nothing left: with
# --no-loadscope-reorder (the Makefile's) pytest-xdist hands out the files in this order,
# where by default it orders them by how many tests they hold, which put these last. The
# sweep files wait for the demo that the first-hour file starts (tests/e2e/conftest.py): they
# come after two other long files, by when it is about done.
SLOWEST_FIRST = (
    "tests/e2e/test_first_hour_e2e.py",
    "tests/e2e/test_tune_e2e.py",
    "tests/e2e/test_team_e2e.py",
    "tests/e2e/test_sweeps_e2e.py",
    "tests/e2e/test_queued_sweeps_e2e.py",
    "tests/e2e/test_e2e.py",
    "tests/e2e/test_resume_e2e.py",
    "tests/e2e/test_learning_e2e.py",
    "tests/e2e/test_signals_e2e.py",
    "tests/e2e/test_tracking_server.py",
    "tests/e2e/test_cluster_e2e.py",
    "tests/tools/test_ui.py",
    "tests/finetune/training/test_devices.py",
    "tests/stages/test_faults.py",
    "tests/stages/test_bad_input.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Each test worker's TensorFlow, and the stages and tools its tests start, gets its share
    of the cores, at least one thread. By default every TensorFlow process sizes its thread
    pools to the whole machine, and their threads spin waiting for cores the other workers
    hold: on 2 cores `make test-fast` took 393 s with two workers of two threads each, 370 s
    with one thread each and 286 s with three workers of one thread (the Makefile's JOBS).
    A value the user set wins. Set here, before xdist starts its workers, so they inherit it."""
    workers = getattr(config.option, "numprocesses", None) or 1
    os.environ.update(share_of_cores(workers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first, the others in the order pytest collected them."""
    rank = {path: position for position, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a tiny generated archive in the official layout."""
    path = tmp_path_factory.mktemp("archive") / "cifar-10-sample.tar.gz"
    return path, write_archive(path, TINY_TRAIN, TINY_TEST, seed=1)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, worker_id) -> Path:
    """A directory where all six stages ran in-process, in order, on tiny data: built once
    for the whole run, by the first xdist worker that needs it; the others wait for it and
    read the same directory. Tests only read it."""
    return built_once(tmp_path_factory, worker_id, "stages", run_every_stage)


def run_every_stage(root: Path) -> None:
    from src.stages import evaluate, export, phase1_extract, phase2_finetune, prepare, report

    root.mkdir(parents=True)
    archive = root.parent / "cifar-10-sample.tar.gz"
    sha256 = write_archive(archive, TINY_TRAIN, TINY_TEST, seed=1)
    exports = {"export.formats": project_params().export.formats}  # the default formats
    write_params(root / "params.yaml", tiny_overrides(str(archive), sha256) | exports)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in STAGE_ENV:
            patch.delenv(name, raising=False)
        for stage in (prepare, phase1_extract, phase2_finetune, evaluate, export, report):
            stage.main(stage_args(stage.STAGE.name))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with its own MLflow store, as a stage would see it."""
    monkeypatch.chdir(tmp_path)
    for name in STAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def stopping():
    """The stages' stop handlers (``entrypoint.stop_on_signals``) installed for the test, the
    previous handlers back after it."""
    from src.finetune.entrypoint import STOP_SIGNALS, stop_on_signals

    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    stop_on_signals()
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    logging.getLogger("sqlalchemy").setLevel(logging.NOTSET)
