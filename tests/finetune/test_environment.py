import os

import psutil
import pytest

from src.finetune import environment


def test_execution_id_is_the_nearest_dvc_process_or_this_one():
    current = environment.execution_id()
    assert current.endswith(f"-{os.getpid()}-{int(psutil.Process().create_time())}")
    assert environment.execution_id() == current
    assert environment.is_alive(current)
    assert not environment.is_alive(f"{current.rsplit('-', 2)[0]}-1-1")


def test_repository_root_is_dvc_root_or_the_working_directory(workdir, monkeypatch):
    assert environment.repository_root() == workdir.resolve()
    monkeypatch.setenv("DVC_ROOT", "/srv/repo")
    assert str(environment.repository_root()) == "/srv/repo"


@pytest.mark.parametrize(
    ("cores", "processes", "threads"), [(2, 3, "1"), (2, 2, "1"), (16, 4, "4"), (8, 1, "8")]
)
def test_processes_side_by_side_share_the_cores(monkeypatch, cores, processes, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    for name in environment.TENSORFLOW_THREADS:
        monkeypatch.delenv(name, raising=False)
    share = environment.share_of_cores(processes)
    assert share == dict.fromkeys(environment.TENSORFLOW_THREADS, threads)


def test_the_thread_counts_the_user_set_are_kept(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "6")
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    assert environment.share_of_cores(2) == {"TF_NUM_INTEROP_THREADS": "8"}
