"""Tuning for real: `python -m src.tune` drives real `dvc` trials in their own workspaces,
on one box (SQLite, two workers) and on two "machines" sharing a PostgreSQL study and a
`mlflow server` on PostgreSQL, one of them killed mid-trial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from src.finetune.tuning.space import SearchSpace
from src.finetune.tuning.study import open_study
from tests.support.commands import command_env, run
from tests.support.postgres import PostgresServer
from tests.support.projects import local_store, make_project
from tests.support.servers import MlflowServer

pytestmark = pytest.mark.e2e
SPACE = {"phase2.lr": {"low": 1e-5, "high": 1e-2, "log": True}}


def tune_yaml(repo: Path, trials: int, pruner: str) -> None:
    text = json.dumps(
        {"metric": "val_accuracy", "trials": trials, "pruner": pruner, "space": SPACE}
    )
    (repo / "tune.yaml").write_text(text)  # JSON is YAML
    run(repo, "git", "add", "tune.yaml")
    run(repo, "git", "commit", "-qm", "search space")


def tune(repo: Path, *arguments: str, **env: str) -> str:
    return run(repo, sys.executable, "-m", "src.tune", *arguments, **env)


def trial_logs(repo: Path, study: str) -> dict[int, str]:
    folder = repo / ".dvc/tmp/tune" / study
    return {int(p.stem.split("-")[1]): p.read_text() for p in folder.glob("trial-*.log")}


@pytest.fixture(scope="module")
def one_box(tmp_path_factory):
    """A two-trial study on two workers, then continued to three trials."""
    repo = make_project(tmp_path_factory.mktemp("tune") / "repo")
    tune_yaml(repo, trials=2, pruner="none")
    first = tune(repo, "--jobs", "2")
    again = tune(repo, "--trials", "3")
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{repo / 'optuna.db'}")
    return {"repo": repo, "first": first, "again": again, "study": study}


def test_each_trial_is_a_dvc_experiment_and_the_study_continues(one_box):
    repo, study = one_box["repo"], one_box["study"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert "2 trials (0 done), 2 at a time" in one_box["first"]
    assert "3 trials (2 done), 1 at a time" in one_box["again"]
    for number in range(2):
        assert f"trial {number} complete: val_accuracy " in one_box["first"]
    assert "trial 2 complete" in one_box["again"] and "0 left" in one_box["again"]
    names = run(repo, "dvc", "exp", "list", "--name-only").split()
    assert sorted(names) == ["tune-0", "tune-1", "tune-2"]
    best = study.best_trial
    run(repo, "dvc", "exp", "apply", f"tune-{best.number}")
    applied = json.loads(run(repo, "dvc", "params", "diff", "--json"))["params.yaml"]
    assert applied["phase2.lr"]["new"] == pytest.approx(best.params["phase2.lr"])


def test_stages_a_trial_does_not_change_come_from_dvcs_cache(one_box):
    logs = trial_logs(one_box["repo"], "tune")
    assert sorted(logs) == [0, 1, 2]
    trained = [n for n, text in logs.items() if "Running stage 'phase1_extract'" in text]
    assert trained == [0]  # the first trial runs alone; the others reuse its phase 1
    for text in logs.values():
        assert "Running stage 'phase2_finetune'" in text


def test_the_study_leaves_its_trials_best_params_and_figures(one_box):
    repo, study = one_box["repo"], one_box["study"]
    folder = repo / "reports/tuning"
    assert {p.name for p in folder.iterdir()} == {
        "tune.json",
        "tune-best.yaml",
        "tune-history.png",
        "tune-importance.png",
    }
    listed = json.loads((folder / "tune.json").read_text())
    assert [t["experiment"] for t in listed["trials"]] == [f"tune-{n}" for n in range(3)]
    assert all(t["epochs"] == 2 and t["state"] == "complete" for t in listed["trials"])
    assert listed["best"]["number"] == study.best_trial.number
    replay = run(repo, sys.executable, "-m", "src.recipes", "reports/tuning/tune-best.yaml")
    assert replay.strip() == f"-S phase2.lr={study.best_trial.params['phase2.lr']}"


def test_mlflow_holds_one_run_per_study_with_each_trial_nested(one_box):
    client = local_store(one_box["repo"])
    experiment = client.get_experiment_by_name("cifar10-finetune")
    runs = client.search_runs([experiment.experiment_id])
    (study_run,) = [r for r in runs if r.data.tags["pipeline.role"] == "study"]
    assert study_run.info.run_name == "tune" and study_run.info.status == "FINISHED"
    assert study_run.data.metrics["trials_complete"] == 3
    assert study_run.data.metrics["best_val_accuracy"] == pytest.approx(one_box["study"].best_value)
    comparisons = [r for r in runs if r.data.tags["pipeline.role"] == "comparison"]
    assert sorted(r.info.run_name for r in comparisons) == ["tune-0", "tune-1", "tune-2"]
    for run_ in comparisons:
        assert run_.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        assert run_.data.tags["tune.state"] == "complete" and run_.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(study_run.info.run_id)}
    assert {"tune.json", "tune-best.yaml", "tune-history.png"} <= artifacts


def kill_mid_training(worker: subprocess.Popen, storage: str, repo: Path) -> int:
    """SIGKILL the worker once its trial trains phase 2; that trial's number."""
    study = optuna.load_study(study_name="shared", storage=storage)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker ended before it could be killed"
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            log = Path(trial.user_attrs.get("log", "/nonexistent"))
            text = log.read_text() if log.is_relative_to(repo) and log.is_file() else ""
            _, phase2, training = text.partition("Running stage 'phase2_finetune'")
            if phase2 and "Epoch" in training:  # not phase 1's epochs
                os.kill(worker.pid, signal.SIGKILL)
                return trial.number
        time.sleep(1)
    raise AssertionError("no trial of the first worker reached phase 2")


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    """Two clones ("machines") join one study in PostgreSQL and log to one `mlflow server` on
    PostgreSQL; the first is killed while its trial trains."""
    base = tmp_path_factory.mktemp("machines")
    with PostgresServer() as postgres:
        storage = postgres.url("studies")
        with MlflowServer(base / "mlflow", backend=postgres.url("mlflow")) as server:
            # The study as a first worker makes it, with an earlier trial that was perfect from
            # its second epoch: every trial here trails it there and is pruned after two of
            # its three epochs.
            space = SearchSpace.model_validate({"trials": 5, "pruner": "median", "space": SPACE})
            study = open_study(space, "shared", storage)
            lr = {"phase2.lr": FloatDistribution(1e-5, 1e-2, log=True)}
            study.add_trial(
                create_trial(
                    params={"phase2.lr": 1e-3}, distributions=lr, value=1.0,
                    intermediate_values={1: 0.0, 2: 1.0, 3: 1.0},
                )
            )  # fmt: skip
            machines = [make_project(base / name, {"phase2.epochs": 3}) for name in "ab"]
            for repo in machines:
                tune_yaml(repo, trials=5, pruner="median")
            command = [sys.executable, "-m", "src.tune", "--storage", storage, "--study", "shared"]
            env = command_env(MLFLOW_TRACKING_URI=server.uri)
            workers = [
                subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for repo in machines
            ]  # fmt: skip
            killed = kill_mid_training(workers[0], storage, machines[0])
            survivor = workers[1].communicate(timeout=900)[0]
            workers[0].wait()
            time.sleep(3)  # the killed worker's dvc and stage see it gone
            client = MlflowClient(server.uri)
            experiment = client.get_experiment_by_name("cifar10-finetune")
            runs = client.search_runs([experiment.experiment_id])
            trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    return {
        "machines": machines, "killed": killed, "survivor": survivor,
        "code": workers[1].returncode, "trials": trials, "runs": runs,
    }  # fmt: skip


def test_two_workers_finish_one_study_without_losing_or_repeating_a_trial(two_machines):
    trials, survivor = two_machines["trials"], two_machines["survivor"]
    assert two_machines["code"] == 0, survivor
    assert [t.number for t in trials] == list(range(len(trials)))
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 5
    assert (
        states.count(TrialState.FAIL) == 1
        and trials[two_machines["killed"]].state == TrialState.FAIL
    )
    logs = [t.user_attrs["log"] for t in trials[1:]]
    assert len(set(logs)) == len(logs)  # each trial ran once, in one workspace


def test_pruned_trials_stop_early_and_leave_nothing_half_written(two_machines):
    pruned = [t for t in two_machines["trials"] if t.state == TrialState.PRUNED]
    assert len(pruned) == 4
    for trial in pruned:
        assert sorted(trial.intermediate_values) == [1, 2]  # two of three epochs
        assert trial.user_attrs["pruned_at_epoch"] == 4  # after phase 1's two epochs
        assert "experiment" not in trial.user_attrs
        said = f"trial {trial.number} pruned after 2 epochs: its validation metric trails the"
        assert said in two_machines["survivor"]
    workspace = two_machines["machines"][1] / ".dvc/tmp/tune/shared/worker-0"
    assert not (workspace / "models/phase2.keras").exists()
    assert not (workspace / "models/.phase2_backup").exists()


def test_a_killed_worker_leaves_a_failed_trial_and_no_process_behind(two_machines):
    import psutil

    killed, first = two_machines["killed"], two_machines["machines"][0]
    assert f"trial {killed} failed: its worker stopped" in two_machines["survivor"]
    for process in psutil.process_iter(["cwd"]):
        assert not str(process.info["cwd"] or "").startswith(str(first)), process.cmdline()


def test_the_team_mlflow_server_on_postgresql_holds_the_study_and_its_trials(two_machines):
    runs = two_machines["runs"]
    (study,) = [r for r in runs if r.data.tags["pipeline.role"] == "study"]
    comparisons = [r for r in runs if r.data.tags["pipeline.role"] == "comparison"]
    assert len(comparisons) == 5  # four pruned trials and the killed one
    for run_ in comparisons:
        assert run_.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert run_.info.status != "RUNNING"
        killed = run_.data.tags["tune.trial"] == str(two_machines["killed"])
        assert run_.data.tags["tune.state"] == ("fail" if killed else "pruned")
        assert run_.info.status in (("KILLED", "FAILED") if killed else ("KILLED",))
    assert study.data.metrics["trials_pruned"] == 4
