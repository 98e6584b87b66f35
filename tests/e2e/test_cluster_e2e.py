"""A multi-worker cluster on this machine: two `phase1_extract` processes that train together
as TF_CONFIG describes, and a worker whose peer never comes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.commands import command_env, stage_args
from tests.support.params import tiny_overrides, write_params
from tests.support.projects import local_store
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e
OUTPUTS = ("models/phase1.keras", "reports/phase1_history.csv", "reports/phase1_summary.json")


@pytest.fixture
def cluster_dir(tmp_path, pipeline, sample_archive) -> Path:
    (tmp_path / "data").symlink_to(pipeline / "data")
    return tmp_path


def write_cluster_params(directory: Path, sample_archive, timeout_s: int) -> None:
    archive, sha256 = sample_archive
    overrides = tiny_overrides(str(archive), sha256) | {
        "train.distribution": "multi_worker",
        "train.worker_timeout_s": timeout_s,
    }
    write_params(directory / "params.yaml", overrides)


def start_worker(directory: Path, addresses: list[str], index: int) -> subprocess.Popen:
    config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    return subprocess.Popen(
        [sys.executable, "-m", "src.stages.phase1_extract", *stage_args("phase1_extract")],
        cwd=directory,
        env=command_env(TF_CONFIG=json.dumps(config), PYTHONPATH=str(Path.cwd())),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def outputs_of(workers: list[subprocess.Popen], timeout_s: float) -> list[str]:
    """What each worker printed; none is left running, even when one hangs."""
    try:
        return [worker.communicate(timeout=timeout_s)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def trained_weights(output: str) -> str:
    (digest,) = re.findall(r"trained weights: ([0-9a-f]{16})", output)
    return digest


def test_two_workers_train_the_same_weights_and_only_the_chief_writes(cluster_dir, sample_archive):
    # Collectives time out after as long: the chief opens its MLflow store (a new one takes
    # seconds to create) while the other worker already waits for it.
    write_cluster_params(cluster_dir, sample_archive, timeout_s=120)
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    workers = [start_worker(cluster_dir, addresses, index) for index in (0, 1)]
    outputs = outputs_of(workers, timeout_s=600)
    assert [worker.returncode for worker in workers] == [0, 0], "\n=====\n".join(outputs)
    assert "with 2 replica(s)" in outputs[0] and "with 2 replica(s)" in outputs[1]
    assert trained_weights(outputs[0]) == trained_weights(outputs[1])
    assert all((cluster_dir / path).is_file() for path in OUTPUTS)
    history = json.loads((cluster_dir / "reports/phase1_summary.json").read_text())
    assert history["kept_epoch"] == 2
    runs = local_store(cluster_dir).search_runs(
        [e.experiment_id for e in local_store(cluster_dir).search_experiments()]
    )
    assert sorted(r.info.run_name for r in runs if r.data.tags.get("pipeline.role") == "stage") == [
        "phase1_extract"
    ]


def test_a_worker_whose_peer_never_comes_stops_in_one_line(cluster_dir, sample_archive):
    write_cluster_params(cluster_dir, sample_archive, timeout_s=10)
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    started = time.monotonic()
    alone = start_worker(cluster_dir, addresses, 0)
    (output,) = outputs_of([alone], timeout_s=120)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert alone.returncode != 0 and len(errors) == 1, output
    assert f"not every worker of {', '.join(addresses)} connected within 10 s" in errors[0]
    assert time.monotonic() - started < 60
    assert not any((cluster_dir / path).exists() for path in OUTPUTS)
    assert not (cluster_dir / "mlflow.db").exists()
