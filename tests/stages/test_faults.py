"""Faults injected for real, stage by stage: a broken or locked MLflow store, a server that
answers 500 or hangs, a failed MLflow call, a full disk or a read-only one, a moved
repository. Each ends in one line (or a stage that goes on), within seconds, with no MLflow
run left RUNNING and nothing half-written."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from filelock import FileLock
from mlflow.tracking import MlflowClient

from src.finetune.entrypoint import run_stage
from src.finetune.errors import PipelineError
from src.finetune.params import load_params
from src.finetune.tracking import track_stage
from src.finetune.tracking.mlflow import store
from src.finetune.tracking.mlflow.store import tracking_uri
from src.stages import prepare
from tests.support.commands import stage_args
from tests.support.params import ROOT, tiny_overrides, write_params
from tests.support.servers import LocalServer


@pytest.fixture
def stage_dir(workdir, sample_archive):
    archive, sha256 = sample_archive
    write_params(workdir / "params.yaml", tiny_overrides(str(archive), sha256))
    return workdir


def prepare_fails(capsys) -> tuple[str, float]:
    """Run the prepare stage; its one error line and how long it took to say it."""
    capsys.readouterr()
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        run_stage("prepare", lambda: prepare.main(stage_args("prepare")))
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exited.value.code == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0], seconds


def no_run_left_running(database: Path) -> None:
    client = MlflowClient(f"sqlite:///{database}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert [
        r.info.run_name for r in client.search_runs(experiments) if r.info.status == "RUNNING"
    ] == []


# --- opening the store ------------------------------------------------------------------------


def test_a_corrupt_store_is_one_line(stage_dir, capsys):
    (stage_dir / "mlflow.db").write_bytes(b"this is not a SQLite database\n" * 200)
    line, seconds = prepare_fails(capsys)
    assert "mlflow.db is not a usable MLflow store" in line and "move it aside" in line
    assert seconds < 30 and not (stage_dir / "data/prepared").exists()


def test_a_store_locked_for_long_is_one_line(stage_dir, capsys, monkeypatch):
    monkeypatch.setattr(store, "STORE_LOCK_TIMEOUT_S", 1)
    with FileLock(f"{stage_dir / 'mlflow.db'}.lock"):
        line, seconds = prepare_fails(capsys)
    assert "stayed locked by another process for 1 s" in line and seconds < 30


def test_a_tracking_uri_of_no_known_kind_is_one_line(stage_dir, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchstore://somewhere")
    line, _ = prepare_fails(capsys)
    assert "the MLflow store at nosuchstore://somewhere does not work" in line


class Answers500(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 500)
        self.end_headers()
        self.wfile.write(b"OK" if self.path == "/health" else b"Internal Server Error")

    do_POST = do_GET

    def log_message(self, *args):
        pass


class HangsBehindHealth(Answers500):
    def do_GET(self):
        if self.path != "/health":
            time.sleep(120)
        super().do_GET()

    do_POST = do_GET


@pytest.mark.parametrize("handler", [Answers500, HangsBehindHealth], ids=["500", "hangs"])
def test_a_server_that_fails_behind_a_healthy_health_check_is_one_line_within_30_s(
    stage_dir, capsys, monkeypatch, handler
):
    with LocalServer(handler) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.base)
        line, seconds = prepare_fails(capsys)
    assert f"the MLflow store at {server.base} does not work" in line
    assert seconds < 30


def test_a_deleted_experiment_is_one_line_saying_how_to_restore_it(stage_dir, capsys):
    client = MlflowClient(tracking_uri())
    client.delete_experiment(client.create_experiment("cifar10-finetune"))
    line, _ = prepare_fails(capsys)
    assert "MLflow experiment 'cifar10-finetune' is deleted; restore it" in line
    no_run_left_running(stage_dir / "mlflow.db")


# --- calls that fail during a stage -------------------------------------------------------------


def small_model():
    import keras

    # 40,000 weights: 160 kB, more than the full disk below can take.
    return keras.Sequential([keras.Input((20_000,)), keras.layers.Dense(2, activation="softmax")])


def test_one_failed_call_is_said_and_tracking_goes_on_and_closes_the_runs(stage_dir, caplog):
    params = load_params()
    # a name the params would refuse, so that MLflow's registry refuses it in the call
    mlflow = params.mlflow.model_copy(update={"registered_model": "bad/name"})
    params = params.model_copy(update={"mlflow": mlflow})
    with track_stage("phase2_finetune", params, ()) as tracker:
        tracker.log_model(small_model(), "finetuned_model", ("a", "b"), final=True)
        tracker.log_results({"after": 1.0})
    assert not tracker.offline
    assert "MLflow: log model failed (Invalid model name 'bad/name'" in caplog.text
    client = MlflowClient(tracking_uri())
    for run_id in (tracker.inner.run_id, tracker.inner.comparison_run_id):
        assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(tracker.inner.run_id).data.metrics["after"] == 1.0


@contextlib.contextmanager
def mounted(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (as root: the tests inject a full or read-only disk)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_while_logging_a_model_leaves_it_failed_and_closes_the_runs(stage_dir, caplog):
    params = load_params()
    with mounted(stage_dir / "mlartifacts", "size=64k"):
        with track_stage("phase2_finetune", params, ()) as tracker:
            tracker.log_model(small_model(), "finetuned_model", ("a", "b"))
        client = MlflowClient(tracking_uri())
        outputs = client.get_run(tracker.inner.comparison_run_id).outputs.model_outputs
        statuses = [str(client.get_logged_model(o.model_id).status) for o in outputs]
    assert "MLflow: log model failed" in caplog.text and "No space left" in caplog.text
    assert all("READY" not in status for status in statuses), statuses
    for run_id in (tracker.inner.run_id, tracker.inner.comparison_run_id):
        assert client.get_run(run_id).info.status == "FINISHED"


# --- disks ----------------------------------------------------------------------------------


def test_a_full_disk_for_the_outputs_is_one_line_naming_it_and_nothing_is_left(stage_dir, capsys):
    with mounted(stage_dir / "data", "size=256k") as data:
        line, _ = prepare_fails(capsys)
        left = sorted(p.name for p in data.rglob("*"))
    assert "cannot write" in line and "data/" in line and "the disk is full" in line
    assert left == []


def test_a_read_only_output_directory_is_one_line_naming_it(stage_dir, capsys):
    with mounted(stage_dir / "data", "ro,size=64k"):
        line, _ = prepare_fails(capsys)
    assert "cannot write" in line and "the file system is read-only" in line


# --- a moved repository -------------------------------------------------------------------------


def test_a_moved_repository_logs_into_its_own_mlartifacts(workdir, monkeypatch):
    params = load_params(write_params(workdir / "params.yaml"))
    first = workdir / "first"
    first.mkdir()
    monkeypatch.chdir(first)
    with track_stage("prepare", params, ()) as before:
        before.log_artifacts([Path(write_params(first / "note.yaml"))])
    moved = workdir / "moved"
    shutil.move(first, moved)
    monkeypatch.chdir(moved)
    with track_stage("prepare", params, ()) as after:
        pass
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(params.mlflow_experiment)
    assert experiment.artifact_location == (moved / "mlartifacts").as_uri()
    for run_id in (before.inner.run_id, after.inner.run_id):
        assert client.get_run(run_id).info.artifact_uri.startswith((moved / "mlartifacts").as_uri())
    assert [a.path for a in client.list_artifacts(before.inner.run_id)] == ["note.yaml"]


# --- what the schema accepts, the stages can run --------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    """YAML anchors, each a list of eight aliases of the one before: 8**levels leaves."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * 8)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly_in_one_short_line(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    text = path.read_text().replace("seed: 42", "seed: *a8", 1)
    path.write_text(alias_bomb() + text)
    started = time.monotonic()
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        f"{path}: line 2 uses the YAML alias *a0; write the value out (aliases are refused: "
        "a few of them can expand past all memory)"
    )


def test_an_alias_anywhere_in_params_yaml_is_refused_even_a_harmless_one(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    text = path.read_text().replace("seed: 42", "seed: &s 42", 1)
    path.write_text(text.replace("  batch_size: 64", "  batch_size: *s", 1))
    with pytest.raises(PipelineError, match=r"line \d+ uses the YAML alias \*s;"):
        load_params(path)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("data.train_limit", "split would hold no image of class"),
        ("data.test_limit", "the test split would hold no image of class"),
    ],
)
def test_limits_that_leave_a_class_out_stop_prepare_before_any_training(
    stage_dir, capsys, limit, expected
):
    archive, sha256 = (load_params().data.archive, load_params().data.sha256)
    write_params(stage_dir / "params.yaml", tiny_overrides(archive, sha256) | {limit: 5})
    line, _ = prepare_fails(capsys)
    assert expected in line


def test_a_stage_run_by_a_python_without_the_projects_packages_says_so_in_one_line(tmp_path):
    """`.venv/bin/dvc repro` without the environment activated runs the stages with the
    system's `python`: one line saying what to do, not an import traceback."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = bare / "bin/python"
    result = subprocess.run(
        [str(python), "-m", "src.stages.prepare", "--out", "data/prepared"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {python} runs the stage, and it lacks the project's packages (psutil is "
        "missing): run `make repro`, or `source .venv/bin/activate` before `dvc repro`"
    ]
