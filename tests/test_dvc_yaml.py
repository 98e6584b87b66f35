"""dvc.yaml declares exactly what each stage's code reads and writes."""

import ast
import shlex
import subprocess
from pathlib import Path

import pytest

from src.stages import evaluate, phase1_extract, phase2_finetune, prepare, report
from tests.helpers import PIPELINE, ROOT

MODULES = {
    "prepare": prepare,
    "phase1_extract": phase1_extract,
    "phase2_finetune": phase2_finetune,
    "evaluate": evaluate,
    "report": report,
}


def paths(entries):
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}


def backup_dirs(stage) -> list[str]:
    args = shlex.split(stage["cmd"])
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--backup-dir"]


@pytest.mark.parametrize("name", ["phase1_extract", "phase2_finetune"])
def test_training_backups_are_private_to_their_stage_and_ignored_by_git(name, tmp_path):
    stage = PIPELINE["stages"][name]
    (backup,) = backup_dirs(stage)
    declared = paths(stage.get("deps")) | paths(stage.get("outs"))
    assert backup not in declared, "DVC would delete it before the stage runs, losing the resume"
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", f"{backup}/state.json"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, f"{backup} is not git-ignored"


@pytest.mark.parametrize("name", MODULES)
def test_params_logged_by_a_stage_are_the_ones_dvc_tracks_for_it(name):
    assert tuple(PIPELINE["stages"][name].get("params", ())) == MODULES[name].PARAMS


@pytest.mark.parametrize("name", MODULES)
def test_every_path_in_a_command_is_a_declared_dep_or_out(name):
    stage = PIPELINE["stages"][name]
    declared = paths(stage.get("deps")) | paths(stage.get("outs")) | paths(stage.get("metrics"))
    arguments = [a for a in shlex.split(stage["cmd"]) if "/" in a and not a.startswith("src.")]
    exchanged = set(arguments) - set(backup_dirs(stage))
    assert exchanged and exchanged <= declared
    assert f"src/stages/{name}.py" in declared
    assert all((ROOT / dep).exists() for dep in paths(stage["deps"]) if dep.startswith("src/"))


# Imported by stages but changing nothing they compute: how runs are logged, how errors read,
# how files are written. dvc.yaml leaves them out of the deps on purpose.
LOGGING_ONLY = {
    "src/finetune/__init__.py",
    "src/finetune/errors.py",
    "src/finetune/files.py",
    "src/finetune/live_logging.py",
    "src/finetune/tracking.py",
}


def project_imports(path: Path) -> set[str]:
    """The project's modules a file imports, anywhere in it, as paths from the root."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            candidate = ROOT / (name.replace(".", "/") + ".py")
            if name.startswith("src.") and candidate.is_file():
                found.add(candidate.relative_to(ROOT).as_posix())
    return found


def code_closure(stage_file: str) -> set[str]:
    """Every project module the stage imports, directly or through another module."""
    seen, todo = set(), [stage_file]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        if module not in LOGGING_ONLY:
            todo += sorted(project_imports(ROOT / module))
    return seen


@pytest.mark.parametrize("name", MODULES)
def test_code_deps_are_the_modules_the_stage_really_imports(name):
    declared = {dep for dep in paths(PIPELINE["stages"][name]["deps"]) if dep.startswith("src/")}
    assert declared == code_closure(f"src/stages/{name}.py") - LOGGING_ONLY


def test_evaluate_builds_its_batches_without_the_training_code():
    imported = code_closure("src/stages/evaluate.py")
    for module in ("training", "caching", "resume", "optimization"):
        assert f"src/finetune/{module}.py" not in imported
