import os

import psutil

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
