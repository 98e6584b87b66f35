"""Workspaces of their own for the tools that run the pipeline (the demo, tuning workers):
clones at the repository's commit, sharing its DVC cache, one process each."""

import subprocess

import pytest

from src.finetune.workspaces import bring_inputs, claim_workspace, demo_folder
from tests.support.commands import command_env, run
from tests.support.params import project_params


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


def test_each_run_brings_the_image_folder_as_the_repository_holds_it_now(repository):
    """data/images with its README tracked by git, the images not: the workspace gets the
    images (not just the README), and a class added or a file deleted since reaches the
    next run."""
    images = repository / "data/images"
    images.mkdir(parents=True)
    (images / "README.md").write_text("your images here\n")
    run(repository, "git", "add", "data/images/README.md")
    run(repository, "git", "commit", "-qm", "images folder")
    for name in ("cat/1.png", "cat/2.png", "dog/1.png"):
        (images / name).parent.mkdir(exist_ok=True)
        (images / name).write_bytes(b"image " + name.encode())
    params = project_params().model_copy(
        update={"data": project_params().data.model_copy(update={"folder": "data/images"})}
    )
    workspace = claim_workspace(demo_folder(repository), repository, {}, dvc())
    assert bring_inputs(workspace, params) == ["data/images (4 files)"]
    brought = workspace.path / "data/images"
    assert sorted(p.name for p in brought.iterdir()) == ["README.md", "cat", "dog"]
    (images / "cat/2.png").unlink()
    (images / "fox").mkdir()
    (images / "fox/1.png").write_bytes(b"a fox")
    assert bring_inputs(workspace, params) == ["data/images (4 files)"]
    assert sorted(str(p.relative_to(brought)) for p in brought.rglob("*.png")) == [
        "cat/1.png", "dog/1.png", "fox/1.png",
    ]  # fmt: skip
    assert (brought / "fox/1.png").read_bytes() == b"a fox"
    assert run(repository, "git", "status", "--porcelain", "--untracked-files=no") == ""
