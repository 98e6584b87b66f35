"""dvc.yaml declares exactly what each stage's code reads and writes."""

import shlex
import subprocess

import pytest

from src.stages import evaluate, phase1_extract, phase2_finetune, prepare, report
from tests.conftest import PIPELINE, ROOT

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
