"""Stopping a training stage the ways machines and people do, under a real `dvc repro`.

Three attempts in one repository, each stopped once phase 1 has backed up a new epoch:
Ctrl-C in the terminal (SIGINT to the whole process group), `docker stop` (SIGTERM to
`dvc` alone, which does not pass it on) and Slurm's `scancel` or `kill` (SIGTERM to the
stage alone). Each ends with one line, its MLflow runs KILLED and only the backup left; a
fourth `dvc repro phase1_extract` resumes and finishes phase 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.commands import run, start_repro
from tests.support.projects import local_store, make_project, runs_by_execution

pytestmark = pytest.mark.e2e
# Epochs through the frozen base (not its cached features), and enough of them, so that
# each stop lands during training, even the one noticed only when `dvc` is found gone.
TRAINING = {"phase1.epochs": 30, "phase1.cache_features": False, "phase2.epochs": 1}
STATE = "models/.phase1_backup/state.json"
STOPPED = "the last finished epoch is backed up: run `dvc repro` again to resume"


def backed_up_epoch(repo: Path) -> int:
    try:
        return json.loads((repo / STATE).read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):  # not yet, or being replaced
        return 0


def repro_stopped(repo: Path, stop: str) -> tuple[str, int, float]:
    """`dvc repro`, stopped as ``stop`` says once phase 1 backed up a new epoch:
    (the output, the epoch backed up, seconds from the stop until the stage had exited)."""
    before = backed_up_epoch(repo)
    # its own process group, as a terminal's foreground job
    dvc = start_repro(repo, start_new_session=True)
    deadline = time.monotonic() + 300
    while backed_up_epoch(repo) <= before:
        assert dvc.poll() is None, f"dvc ended before phase 1 backed up an epoch:\n{dvc.stdout}"
        assert time.monotonic() < deadline, "phase 1 backed up no epoch in 300 s"
        time.sleep(0.02)
    (stage,) = [
        p
        for p in psutil.Process(dvc.pid).children(recursive=True)
        if "src.stages.phase1_extract" in p.cmdline()
    ]
    stopped_at = time.monotonic()
    if stop == "ctrl-c":
        os.killpg(dvc.pid, signal.SIGINT)
    elif stop == "docker-stop":
        dvc.send_signal(signal.SIGTERM)
    else:
        stage.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs([stage], timeout=120)
    if alive:  # what the stage said before it hung, not only that it did
        stage.kill()
        output, _ = dvc.communicate(timeout=120)
        pytest.fail(f"phase1_extract still ran 120 s after {stop}:\n{output[-3000:]}")
    seconds = time.monotonic() - stopped_at
    output, _ = dvc.communicate(timeout=120)
    assert dvc.returncode != 0, output
    return output, backed_up_epoch(repo), seconds


@pytest.fixture(scope="module")
def attempts(tmp_path_factory):
    repo = make_project(tmp_path_factory.mktemp("signals"), TRAINING)
    stops = ("ctrl-c", "docker-stop", "kill")
    stopped = {}
    for stop in stops:
        stopped[stop] = repro_stopped(repo, stop)
        stopped[stop] += (sorted(p.name for p in (repo / "models").iterdir()),)
    # Phase 1 only: what follows it is the same as after any repro (test_resume_e2e.py).
    finished = run(repo, "dvc", "repro", "phase1_extract")
    return {"repo": repo, "stopped": stopped, "finished": finished}


@pytest.mark.parametrize("stop", ["ctrl-c", "docker-stop", "kill"])
def test_each_stop_ends_the_stage_with_one_line_in_seconds(attempts, stop):
    output, _, seconds, _ = attempts["stopped"][stop]
    errors = [line for line in output.splitlines() if line.startswith("error: phase1_extract")]
    signal_name = "SIGINT" if stop == "ctrl-c" else "SIGTERM"
    assert errors == [f"error: phase1_extract: stopped by {signal_name}; {STOPPED}"], output
    assert "Traceback" not in output
    if stop == "docker-stop":
        assert "dvc (process" in output and "is gone; stopping" in output
    assert seconds < 60


@pytest.mark.parametrize("stop", ["ctrl-c", "docker-stop", "kill"])
def test_a_stopped_stage_leaves_only_its_backup(attempts, stop):
    assert attempts["stopped"][stop][3] == [".phase1_backup"]


def test_every_stopped_run_is_killed_and_the_next_attempt_resumes_it(attempts):
    done = [attempts["stopped"][stop][1] for stop in ("ctrl-c", "docker-stop", "kill")]
    assert 1 <= done[0] < done[1] < done[2] < TRAINING["phase1.epochs"]
    assert f"resuming phase1_extract at epoch {done[2] + 1}" in attempts["finished"]
    executions = runs_by_execution(local_store(attempts["repo"]))
    assert len(executions) == 4
    for stopped in executions[:3]:
        roles = {(r.data.tags["pipeline.role"], r.info.run_name): r.info.status for r in stopped}
        comparison = [status for (role, _), status in roles.items() if role == "comparison"]
        assert roles[("stage", "phase1_extract")] == "KILLED" and comparison == ["KILLED"]
        assert set(roles.values()) <= {"KILLED", "FINISHED"}  # prepare, in the first
    assert {r.info.status for r in executions[3]} == {"FINISHED"}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stage_stopped_while_it_starts_says_so_in_one_line(tmp_path, stop):
    stage = subprocess.Popen(
        [sys.executable, "-m", "src.stages.phase1_extract", "--help"],
        cwd=Path.cwd(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(0.5)  # importing TensorFlow takes seconds
    stage.send_signal(stop)
    output = stage.communicate(timeout=60)[0]
    assert stage.returncode == 130, output
    assert output.strip() == (
        f"error: phase1_extract: stopped by {stop.name} while starting; run it again"
    )
