"""The Makefile: every command listed by `make help` in one column, and the commands working
in a repository whose path holds a space."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.params import ROOT, write_params


def make(folder: Path, *targets: str) -> subprocess.CompletedProcess:
    python = Path(sys.executable)
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={python}", *targets],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_help_lists_every_command_in_one_column():
    targets = re.findall(r"^([a-z0-9-]+):.*## ", (ROOT / "Makefile").read_text(), re.M)
    lines = make(ROOT, "help").stdout.splitlines()
    assert [line.split()[1] for line in lines] == targets
    assert {"install-s3", "bench-int8", "bench-quality", "strong-recipe"} <= set(targets)
    starts = {len(line) - len(line.split(maxsplit=2)[2]) for line in lines}
    assert len(starts) == 1, "every description starts in the same column"


def test_the_commands_work_in_a_path_with_a_space(tmp_path):
    folder = tmp_path / "my projects" / "finetune"
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    shutil.copytree(ROOT / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    write_params(folder / "params.yaml")
    checked = make(folder, "check")
    assert checked.returncode == 0, checked.stderr
    assert "params.yaml: valid" in checked.stdout
    linted = make(folder, "lint")
    assert linted.returncode == 0 and "not found" not in linted.stderr, linted.stderr


def test_check_refuses_a_bad_params_yaml_in_one_line(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "src").symlink_to(ROOT / "src")
    write_params(tmp_path / "params.yaml", {"phase2.lrr": 1})
    checked = make(tmp_path, "check")
    assert checked.returncode != 0
    assert "error: check: params.yaml: phase2.lrr: unknown key; did you mean lr?" in checked.stderr
