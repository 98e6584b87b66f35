"""The real thing: `dvc repro` and `dvc exp run` in a temporary git repository, MLflow behind."""

import json
from pathlib import Path

import pytest

from tests.support.commands import repro_and_commit, run
from tests.support.projects import local_store, make_project, runs_by_execution

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


DETERMINISTIC = ("reports/metrics.json", "reports/phase1_history.csv", "reports/phase2_history.csv")


@pytest.fixture(scope="module")
def repro(repo) -> str:
    return repro_and_commit(repo)


# Phase-2 and evaluation keys of the fine-tuning recipes, swept as users would.
EXPERIMENT = (
    "phase2.lr=0.002",
    "phase2.optimizer=sgd",
    "phase2.schedule=cosine",
    "phase2.warmup_epochs=1",
    "phase2.label_smoothing=0.1",
    "evaluate.tta=2",
)


@pytest.fixture(scope="module")
def experiment(repo, repro) -> str:
    overrides = [arg for value in EXPERIMENT for arg in ("-S", value)]
    return run(repo, "dvc", "exp", "run", "-n", "lr-sweep", *overrides)


def test_repro_runs_all_six_stages_and_writes_every_output(repo, repro):
    for stage in ("prepare", "phase1_extract", "phase2_finetune", "evaluate", "export", "report"):
        assert f"Running stage '{stage}'" in repro
    for path in (
        "data/prepared/train_images.npy",
        "models/phase1.keras",
        "models/phase2.keras",
        "reports/phase1_history.csv",
        "reports/phase2_history.csv",
        "reports/phase1_summary.json",
        "reports/phase2_summary.json",
        "reports/confusion.csv",
        "reports/figures/validation_curves.png",
        "reports/report.md",
        "reports/model_card.md",
        "reports/export.json",
    ):
        assert (repo / path).is_file(), path
    metrics = json.loads(run(repo, "dvc", "metrics", "show", "--json"))
    values = metrics[""]["data"]["reports/metrics.json"]["data"]
    assert {"baseline_accuracy", "finetuned_accuracy", "accuracy_delta"} <= set(values)
    assert run(repo, "dvc", "status").strip().endswith("Data and pipelines are up to date.")


def test_plots_render(repo, repro, tmp_path):
    run(repo, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "val_accuracy" in page and "predicted" in page


def test_repro_logs_one_comparison_run_with_continuous_curves(repo, repro):
    (execution,) = runs_by_execution(local_store(repo))
    comparison = [r for r in execution if r.data.tags["pipeline.role"] == "comparison"]
    stages = [r for r in execution if r.data.tags["pipeline.role"] == "stage"]
    assert len(comparison) == 1
    assert [r.info.run_name for r in stages] == [
        "prepare",
        "phase1_extract",
        "phase2_finetune",
        "evaluate",
        "export",
        "report",
    ]
    head = run(repo, "git", "rev-parse", "HEAD~1").strip()
    for run_ in execution:
        assert run_.info.status == "FINISHED"
        assert run_.data.tags["mlflow.source.git.commit"] == head
    summary = comparison[0]
    for key in ("baseline_accuracy", "finetuned_accuracy", "accuracy_delta"):
        assert key in summary.data.metrics
    for key in ("val_accuracy", "val_loss"):
        history = local_store(repo).get_metric_history(summary.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3, 4]
    phase1 = next(r for r in stages if r.info.run_name == "phase1_extract")
    assert sorted(
        m.step for m in local_store(repo).get_metric_history(phase1.info.run_id, "loss")
    ) == [
        1,
        2,
    ]


def test_forced_repro_with_the_same_params_gives_identical_results(repo, repro):
    before = {path: (repo / path).read_bytes() for path in DETERMINISTIC}
    run(repo, "dvc", "repro", "--force")
    after = {path: (repo / path).read_bytes() for path in DETERMINISTIC}
    assert after == before


def test_exp_run_with_a_phase2_param_reuses_phase1(repo, repro, experiment):
    assert "Stage 'prepare' didn't change, skipping" in experiment
    assert "Stage 'phase1_extract' didn't change, skipping" in experiment
    for stage in ("phase2_finetune", "evaluate", "export", "report"):
        assert f"Running stage '{stage}'" in experiment

    executions = runs_by_execution(local_store(repo))
    # The execution before the experiment: the forced repro, which wrote the phase-1 checkpoint.
    first, second = executions[-2], executions[-1]
    summary = next(r for r in second if r.data.tags["pipeline.role"] == "comparison")
    assert summary.info.run_name == "lr-sweep" and summary.data.tags["dvc.exp_name"] == "lr-sweep"
    for override in EXPERIMENT:
        key, value = override.split("=")
        assert summary.data.params[key] == value, key
    assert {"baseline_accuracy_tta", "finetuned_accuracy_tta", "accuracy_delta_tta"} <= set(
        summary.data.metrics
    )
    assert sorted(r.info.run_name for r in second if r.data.tags["pipeline.role"] == "stage") == [
        "evaluate",
        "export",
        "phase2_finetune",
        "report",
    ]
    steps = [
        m.step for m in local_store(repo).get_metric_history(summary.info.run_id, "val_accuracy")
    ]
    assert sorted(steps) == [1, 2, 3, 4], "phase 1's curve comes from its cached history"
    old_summary = next(r for r in first if r.data.tags["pipeline.role"] == "comparison")
    assert (
        summary.data.metrics["baseline_accuracy"] == old_summary.data.metrics["baseline_accuracy"]
    )
    old_phase1 = next(r for r in first if r.info.run_name == "phase1_extract")
    phase2 = next(r for r in second if r.info.run_name == "phase2_finetune")
    assert phase2.data.tags["pipeline.input.models/phase1.keras"] == old_phase1.info.run_id

    shown = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    assert "lr-sweep" in json.dumps(shown)
