"""Workspaces of their own for the tools that run the pipeline (the demo, tuning workers):
clones at the repository's commit, sharing its DVC cache, one process each."""

import subprocess

import pytest

from src.finetune.workspaces import claim_workspace, demo_folder
from tests.support.commands import command_env, run


@pytest.fixture
def repository(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text("seed: 1\n")
    for command in (("git", "init", "-q"), ("dvc", "init", "-q"), ("git", "add", "-A"),
                    ("git", "commit", "-qm", "first")):  # fmt: skip
        run(root, *command)
    return root


def dvc() -> str:
    return subprocess.run(
        ["which", "dvc"], env=command_env(), capture_output=True, text=True, check=True
    ).stdout.strip()


def test_two_processes_get_two_workspaces_at_the_commit_sharing_the_cache(repository):
    first = claim_workspace(demo_folder(repository), repository, {}, dvc())
    second = claim_workspace(demo_folder(repository), repository, {}, dvc())
    assert (first.path.name, second.path.name) == ("worker-0", "worker-1")
    head = run(repository, "git", "rev-parse", "HEAD").strip()
    cache = run(repository, "dvc", "cache", "dir").strip()
    for workspace in (first, second):
        assert run(workspace.path, "git", "rev-parse", "HEAD").strip() == head
        assert run(workspace.path, "dvc", "cache", "dir").strip() == cache
    first.lock.release()
    third = claim_workspace(demo_folder(repository), repository, {}, dvc())
    assert third.path.name == "worker-0", "a released workspace is taken again"
    assert run(repository, "git", "status", "--porcelain") == "", "the repository is untouched"


def test_a_workspace_follows_the_repository_to_its_new_commit(repository):
    workspace = claim_workspace(demo_folder(repository), repository, {}, dvc())
    (workspace.path / "params.yaml").write_text("seed: 99\n")  # a run's params
    workspace.lock.release()
    (repository / "params.yaml").write_text("seed: 2\n")
    run(repository, "git", "commit", "-qam", "second")
    again = claim_workspace(demo_folder(repository), repository, {}, dvc())
    assert (again.path / "params.yaml").read_text() == "seed: 2\n"
