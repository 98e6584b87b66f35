"""`make demo` on a fresh clone, as a new user runs it, and copies of that clone to change:
the end-to-end tests' ``demo`` fixture (tests/e2e/conftest.py) runs it once for the whole
test run; the first-hour tests read the clone, the sweep tests work on copies of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.commands import command_env, run
from tests.support.params import ROOT, edit_params, write_params
from workbench.projects import PROJECT_FILES, copy_files

WORKSPACE = ".dvc/tmp/demo/worker-0"  # where the demo runs and leaves its outputs


def run_demo(root: Path) -> None:
    """A fresh clone of the project (committed, no outputs) in ``root/repo`` where
    `make demo` ran while its user had a change staged and edited params.yaml; what it
    printed in ``root/output.txt``, the edited params.yaml in ``root/edited.yaml``."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    copy_files((*PROJECT_FILES, "Makefile"), ROOT, repo)
    write_params(repo / "params.yaml")
    run(repo, "git", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "fresh clone")
    (repo / "notes.md").write_text("my notes\n")
    run(repo, "git", "add", "notes.md")  # staged, not committed
    make = subprocess.Popen(
        ["make", "demo", f"PYTHON={sys.executable}"],
        cwd=repo,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # interleaved as a terminal shows them
        text=True,
    )
    time.sleep(15)  # the demo is under way: the user goes on with their own experiment
    edited = (repo / "params.yaml").read_text().replace("seed: 42", "seed: 7", 1)
    (repo / "params.yaml").write_text(edited)
    output, _ = make.communicate(timeout=1200)
    assert make.returncode == 0, output[-3000:]
    (root / "output.txt").write_text(output)
    (root / "edited.yaml").write_text(edited)


def copy_of_demo(demo: dict, target: Path) -> Path:
    """A copy of the demo's clone to change: its git history, DVC cache, experiments and
    MLflow store, without the demo's own workspace and without the locks of a `dvc` command
    that may be reading the clone meanwhile."""
    source = demo["repo"]

    def left_out(folder: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name.startswith("rwlock")}
        if Path(folder) == source / ".dvc/tmp":
            skipped.add("demo")
        return skipped

    shutil.copytree(source, target, symlinks=True, ignore=left_out)
    return target


def digits_made_mine(demo: dict, target: Path) -> Path:
    """A copy of the demo's clone whose user made the digits their data, as the README's
    sweep section says: `dvc exp apply demo-digits`, then params.yaml and dvc.lock committed.
    Without exports (each costs ~15 s a run) and with one fine-tuning epoch: the commands,
    not the recipe's accuracy, are what the sweep tests test."""
    repo = copy_of_demo(demo, target)
    run(repo, "dvc", "exp", "apply", "demo-digits")
    edit_params(
        repo / "params.yaml",
        {"export.formats": [], "phase2.epochs": 1, "phase2.warmup_epochs": 0},
    )
    run(repo, "git", "add", "params.yaml", "dvc.lock")
    run(repo, "git", "commit", "-qm", "the digits are my data")
    return repo


def readme_blocks(heading: str) -> list[list[str]]:
    """The commands of each bash block under the README's ``heading``, as written."""
    section = (ROOT / "README.md").read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0] for part in section.split("```bash\n")[1:]]
    return [
        [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
        for block in blocks
    ]
