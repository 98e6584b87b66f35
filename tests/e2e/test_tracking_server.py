"""A tracking server that is down, or dies mid-training: the stage says so in seconds or
finishes without it, and `python -m src.relog` logs what was missed."""

import shutil
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.support.commands import command_env, run, stage_args
from tests.support.params import ROOT, tiny_overrides, write_params
from tests.support.servers import MlflowServer, free_port
from workbench.projects import copy_files

pytestmark = pytest.mark.e2e


def stage_command(stage: str) -> list[str]:
    return [sys.executable, "-m", f"src.stages.{stage}", *stage_args(stage)]


def env_for(uri: str) -> dict[str, str]:
    return command_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(ROOT))


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers, like a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("server", ["refusing", "silent"])
def test_unreachable_server_stops_the_stage_within_seconds(
    server, tmp_path, sample_archive, request
):
    port = free_port() if server == "refusing" else request.getfixturevalue("silent_port")
    archive, sha256 = sample_archive
    write_params(tmp_path / "params.yaml", tiny_overrides(str(archive), sha256))
    started = time.monotonic()
    result = subprocess.run(
        stage_command("prepare"),
        cwd=tmp_path,
        env=env_for(f"http://127.0.0.1:{port}"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert time.monotonic() - started < 30
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        len(errors) == 1
        and f"MLflow tracking server http://127.0.0.1:{port} is not " in (errors[0])
    )
    assert "unset MLFLOW_TRACKING_URI" in errors[0]
    assert not (tmp_path / "data/prepared").exists()


@pytest.fixture
def stage_dir(tmp_path, pipeline):
    """A DVC repository of the project with phase1_extract's inputs and 4 epochs to train."""
    shutil.copytree(pipeline / "data/prepared", tmp_path / "data/prepared")
    copy_files(["src", "dvc.yaml"], ROOT, tmp_path)
    overrides = tiny_overrides("unused.tar.gz", "0" * 64) | {"phase1.epochs": 4}
    write_params(tmp_path / "params.yaml", overrides)
    run(tmp_path, "dvc", "init", "-q", "--no-scm")
    return tmp_path


def test_server_dying_mid_training_loses_nothing_and_relog_fills_the_gap(stage_dir):
    server = MlflowServer(stage_dir / "server").start()
    try:
        stage = subprocess.Popen(  # as `dvc repro` runs it, so that dvc.lock records it
            [sys.executable, "-m", "dvc", "repro", "--single-item", "phase1_extract"],
            cwd=stage_dir,
            env=env_for(server.uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        state = stage_dir / "models/.phase1_backup/state.json"
        deadline = time.monotonic() + 300
        while not state.exists():
            assert stage.poll() is None and time.monotonic() < deadline, stage.communicate()
            time.sleep(0.02)
        server.stop()
        _, stderr = stage.communicate(timeout=300)
    finally:
        server.stop()

    assert stage.returncode == 0, stderr
    assert "MLflow tracking failed" in stderr and "python -m src.relog" in stderr
    history = pd.read_csv(stage_dir / "reports/phase1_history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert (stage_dir / "models/phase1.keras").is_file()

    with MlflowServer(stage_dir / "server") as revived:
        for _ in range(2):  # a second relog adds nothing twice
            relog = subprocess.run(
                [sys.executable, "-m", "src.relog"],
                cwd=stage_dir,
                env=env_for(revived.uri),
                capture_output=True,
                text=True,
                check=False,
            )
            assert relog.returncode == 0, relog.stderr
        client = MlflowClient(revived.uri)
        experiment = client.get_experiment_by_name("cifar10-finetune")
        runs = client.search_runs([experiment.experiment_id])
        (relogged,) = [r for r in runs if r.info.run_name.startswith("relog-")]
        steps = [m.step for m in client.get_metric_history(relogged.info.run_id, "val_accuracy")]
        artifacts = {a.path for a in client.list_artifacts(relogged.info.run_id)}
    assert sorted(steps) == [1, 2, 3, 4]
    # The params dvc.lock recorded for phase1_extract: the stage that wrote what was logged.
    assert relogged.data.params["phase1.epochs"] == "4" and "phase2.lr" not in relogged.data.params
    assert "phase1_history.csv" in artifacts
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert relogged.data.metrics["val_accuracy"] == pytest.approx(history["val_accuracy"].iloc[-1])
