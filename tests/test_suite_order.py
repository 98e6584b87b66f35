"""The workers get the slowest test files first: every end-to-end file is among them, each
listed file exists, and the collection puts them ahead of the others, in their order. Each
worker's TensorFlow gets its share of the cores."""

import os
from types import SimpleNamespace

import pytest

from src.finetune.environment import TENSORFLOW_THREADS
from tests.conftest import SLOWEST_FIRST, pytest_collection_modifyitems, pytest_configure
from tests.support.params import ROOT


def test_every_end_to_end_file_is_listed_and_every_listed_file_exists():
    e2e = {str(p.relative_to(ROOT)) for p in (ROOT / "tests/e2e").glob("test_*.py")}
    assert e2e <= set(SLOWEST_FIRST), e2e - set(SLOWEST_FIRST)
    assert [path for path in SLOWEST_FIRST if not (ROOT / path).is_file()] == []


def test_the_slowest_files_come_first_in_their_order_and_the_others_keep_theirs():
    nodeids = [
        "tests/finetune/test_params.py::test_a",
        f"{SLOWEST_FIRST[1]}::test_b",
        "tests/tools/test_predict.py::test_c[1]",
        f"{SLOWEST_FIRST[0]}::test_d",
        "tests/finetune/test_params.py::test_e",
        f"{SLOWEST_FIRST[1]}::test_f",
    ]
    items = [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]
    pytest_collection_modifyitems(items)
    assert [item.nodeid.rsplit("::", 1)[1] for item in items] == [
        "test_d", "test_b", "test_f", "test_a", "test_c[1]", "test_e",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("cores", "workers", "threads"),
    [(2, 3, "1"), (2, 2, "1"), (16, 4, "4"), (8, None, "8"), (1, None, "1")],
)
def test_each_worker_gets_its_share_of_the_cores(monkeypatch, cores, workers, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    for name in TENSORFLOW_THREADS:
        monkeypatch.delenv(name, raising=False)
    pytest_configure(SimpleNamespace(option=SimpleNamespace(numprocesses=workers)))
    assert [os.environ[name] for name in TENSORFLOW_THREADS] == [threads, threads]


def test_a_thread_count_the_user_set_wins(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "6")
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    pytest_configure(SimpleNamespace(option=SimpleNamespace(numprocesses=3)))
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "6"
    assert os.environ["TF_NUM_INTEROP_THREADS"] == "1"


def test_this_worker_and_what_it_starts_run_with_a_thread_count():
    assert all(os.environ.get(name, "").isdigit() for name in TENSORFLOW_THREADS)
