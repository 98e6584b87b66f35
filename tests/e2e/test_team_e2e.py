"""Team scale, for real: a shared `mlflow server`, a parallel queued sweep, `dvc push` / `dvc pull`
and `dvc exp push` / `dvc exp pull` between two clones, and `dvc plots diff` over experiments.

Alice reproduces the pipeline logging to a tracking server, pushes to a local git remote and
a local DVC remote, and sweeps phase2.lr in a queue of two workers; Bob clones and pulls.
"""

import json
import time

import pytest
from mlflow.tracking import MlflowClient

from src.finetune.files import content_hash
from tests.support.commands import PIPELINE, run
from tests.support.projects import local_store, make_project
from tests.support.servers import MlflowServer

pytestmark = pytest.mark.e2e
LEARNING_RATES = ("1e-3", "1e-4")  # two experiments: one for each of the two workers
REGISTERED = "cifar10-tiny"
OUTPUTS = [
    next(iter(out)) if isinstance(out, dict) else out
    for stage in PIPELINE["stages"].values()
    for out in stage.get("outs", []) + stage.get("metrics", [])
]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    base = tmp_path_factory.mktemp("team")
    alice = make_project(base / "alice", {"phase2.lr": 2e-3, "mlflow.registered_model": REGISTERED})
    run(alice, "dvc", "remote", "add", "-d", "storage", str(base / "dvc-store"))
    server = MlflowServer(base / "server")
    with server:
        repro = run(alice, "dvc", "repro", MLFLOW_TRACKING_URI=server.uri)
        logged = snapshot_of_server(MlflowClient(server.uri))
    run(alice, "git", "add", "-A")
    run(alice, "git", "commit", "-qm", "reproduced")
    run(base, "git", "init", "-q", "--bare", "--initial-branch=main", "origin.git")
    run(alice, "git", "remote", "add", "origin", str(base / "origin.git"))
    run(alice, "git", "push", "-q", "origin", "HEAD:refs/heads/main")
    run(alice, "dvc", "push")
    return {"base": base, "alice": alice, "repro": repro, "server": logged}


def snapshot_of_server(client: MlflowClient) -> dict:
    experiment = client.get_experiment_by_name("cifar10-finetune")
    runs = client.search_runs([experiment.experiment_id])
    (comparison,) = [r for r in runs if r.data.tags["pipeline.role"] == "comparison"]
    run_id = comparison.info.run_id
    return {
        "statuses": sorted((r.info.run_name, r.info.status) for r in runs),
        "metrics": comparison.data.metrics,
        "curve": sorted(m.step for m in client.get_metric_history(run_id, "val_accuracy")),
        "artifacts": {a.path for a in client.list_artifacts(run_id)},
        "models": {
            client.get_logged_model(output.model_id).name: output.model_id
            for output in client.get_run(comparison.info.run_id).outputs.model_outputs
        },
        "versions": [v.run_id for v in client.search_model_versions(f"name = '{REGISTERED}'")],
        "comparison": run_id,
        "artifact_uri": comparison.info.artifact_uri,
    }


@pytest.fixture(scope="module")
def sweep(team):
    alice = team["alice"]
    run(alice, "dvc", "exp", "run", "--queue", "-S", f"phase2.lr={','.join(LEARNING_RATES)}")
    run(alice, "dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while True:
        status = run(alice, "dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(2)
    shown = json.loads(run(alice, "dvc", "exp", "show", "--json"))
    experiments = {
        rev["name"]: rev["data"]
        for row in shown
        for exp in row.get("experiments") or []
        for rev in exp["revs"]
    }
    return {"status": status, "experiments": experiments}


# 3. A shared tracking server ------------------------------------------------------------


def test_a_whole_repro_logs_to_the_tracking_server(team):
    logged = team["server"]
    assert {status for _, status in logged["statuses"]} == {"FINISHED"}
    assert len(logged["statuses"]) == 7, logged["statuses"]  # six stages, one comparison
    assert {"baseline_accuracy", "finetuned_accuracy", "accuracy_delta"} <= set(logged["metrics"])
    assert logged["curve"] == [1, 2, 3, 4]
    assert {"validation_curves.png", "report.md"} <= set(logged["artifacts"])
    assert set(logged["models"]) == {"baseline_model", "finetuned_model"}
    assert logged["artifact_uri"].startswith("mlflow-artifacts:"), "the server stores artifacts"
    assert logged["versions"] == [logged["comparison"]]
    assert not (team["alice"] / "mlflow.db").exists(), "nothing was logged locally"


# 1. Parallel sweeps ------------------------------------------------------------------------


def test_a_queued_sweep_on_two_workers_completes_every_experiment(sweep):
    assert sweep["status"].count("Success") == len(LEARNING_RATES), sweep["status"]
    assert "Failed" not in sweep["status"]
    lrs = {
        name: data["params"]["params.yaml"]["data"]["phase2"]["lr"]
        for name, data in sweep["experiments"].items()
    }
    assert sorted(lrs.values()) == sorted(float(lr) for lr in LEARNING_RATES)
    for data in sweep["experiments"].values():
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        assert {"baseline_accuracy", "finetuned_accuracy", "accuracy_delta"} <= set(metrics)


def test_each_queued_experiment_has_its_own_comparison_run_in_the_root_store(team, sweep):
    client = local_store(team["alice"])
    experiment = client.get_experiment_by_name("cifar10-finetune")
    runs = client.search_runs([experiment.experiment_id])
    comparisons = {r.info.run_name: r for r in runs if r.data.tags["pipeline.role"] == "comparison"}
    assert set(comparisons) == set(sweep["experiments"])
    for name, comparison in comparisons.items():
        lr = sweep["experiments"][name]["params"]["params.yaml"]["data"]["phase2"]["lr"]
        assert float(comparison.data.params["phase2.lr"]) == lr
        assert comparison.data.tags["dvc.exp_name"] == name
        for key in ("baseline_accuracy", "finetuned_accuracy", "accuracy_delta"):
            assert key in comparison.data.metrics
    assert [r.info.status for r in runs if r.info.status != "FINISHED"] == []
    logs = "".join(run(team["alice"], "dvc", "queue", "logs", name) for name in comparisons)
    assert "database is locked" not in logs
    assert not list((team["alice"] / ".dvc/tmp/exps").glob("**/mlflow.db"))


# 2. Sharing with teammates -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bob(team):
    run(team["base"], "git", "clone", "-q", str(team["base"] / "origin.git"), "bob")
    clone = team["base"] / "bob"
    run(clone, "dvc", "pull")
    return clone


def test_a_teammate_pulls_every_output_bit_for_bit_with_nothing_to_reproduce(team, bob):
    for path in OUTPUTS:
        assert content_hash(bob / path) == content_hash(team["alice"] / path), path
    assert run(bob, "dvc", "status").strip().endswith("Data and pipelines are up to date.")
    repro = run(bob, "dvc", "repro")
    assert "Running stage" not in repro and "up to date" in repro


def test_experiments_travel_between_clones(team, sweep, bob):
    name = next(iter(sweep["experiments"]))
    run(team["alice"], "dvc", "exp", "push", "origin", name)
    run(bob, "dvc", "exp", "pull", "origin", name)
    assert name in run(bob, "dvc", "exp", "list", "--all-commits")
    run(bob, "dvc", "exp", "apply", name)
    expected = sweep["experiments"][name]
    assert (
        json.loads((bob / "reports/metrics.json").read_text())
        == (expected["metrics"]["reports/metrics.json"]["data"])
    )
    assert f"lr: {expected['params']['params.yaml']['data']['phase2']['lr']}" in (
        (bob / "params.yaml").read_text()
    )
    assert run(bob, "dvc", "status").strip().endswith("Data and pipelines are up to date.")


# 4. Compare at a glance --------------------------------------------------------------------


def test_plots_diff_overlays_experiments_and_marks_the_fine_tuning_start(team, sweep, tmp_path):
    first, second = list(sweep["experiments"])[:2]
    run(team["alice"], "dvc", "plots", "diff", first, second, "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots/index.html").read_text()
    assert first in page and second in page
    assert "fine_tuning_starts" in page and "Validation accuracy" in page


def test_comparison_runs_of_a_sweep_register_their_fine_tuned_models(team, sweep):
    client = local_store(team["alice"])
    versions = client.search_model_versions(f"name = '{REGISTERED}'")
    comparisons = {
        r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name("cifar10-finetune").experiment_id],
            filter_string="tags.`pipeline.role` = 'comparison'",
        )
    }
    assert {v.run_id for v in versions} == comparisons and len(versions) == len(LEARNING_RATES)
