"""The six stage entry points run in-process on tiny data, in order, as DVC would run them."""

import json
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from src.finetune.data.prepared import load_info, load_split
from src.finetune.entrypoint import Interrupted, run_stage
from src.finetune.model.checkpoints import weights_digest
from src.finetune.tracking import TRACKERS
from src.finetune.tracking.mlflow.tracker import MlflowTracker
from src.stages import evaluate, export, phase1_extract, phase2_finetune, prepare, report
from tests.support.commands import stage_args
from tests.support.params import ROOT, TINY_TEST, TINY_TRAIN, tiny_overrides, write_params
from tests.support.tracking import recording_backend

RECORDED = ROOT / "tests/fixtures/defaults"

STAGES = (prepare, phase1_extract, phase2_finetune, evaluate, export, report)
PREPARED = "data/prepared"
ARGS = {module: stage_args(module.STAGE.name) for module in STAGES}


def test_prepare_writes_stratified_splits(pipeline):
    sizes = {}
    for name in ("train", "val", "test"):
        split = load_split(pipeline / PREPARED, name)
        assert split.images.dtype.name == "uint8" and split.images.shape[1:] == (32, 32, 3)
        assert np.bincount(split.labels).tolist() == [len(split) // 10] * 10
        sizes[name] = len(split)
    assert sizes == {"train": TINY_TRAIN * 9 // 10, "val": TINY_TRAIN // 10, "test": TINY_TEST}
    assert load_info(pipeline / PREPARED).source == "cifar10"


def test_histories_number_epochs_across_both_phases(pipeline):
    phase1 = pd.read_csv(pipeline / "reports/phase1_history.csv")
    phase2 = pd.read_csv(pipeline / "reports/phase2_history.csv")
    assert list(phase1.columns) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert phase1["epoch"].tolist() == [1, 2] and phase2["epoch"].tolist() == [3, 4]


def test_defaults_reproduce_the_recorded_histories_and_metrics(pipeline):
    """Every key added since the recording, at its default, leaves the recipe's numbers alone."""
    for name in ("phase1_history.csv", "phase2_history.csv"):
        recorded = pd.read_csv(RECORDED / name)
        produced = pd.read_csv(pipeline / "reports" / name)
        assert list(produced.columns) == list(recorded.columns)
        np.testing.assert_allclose(produced.to_numpy(), recorded.to_numpy(), rtol=1e-6, atol=0)
    recorded = json.loads((RECORDED / "metrics.json").read_text())
    produced = json.loads((pipeline / "reports/metrics.json").read_text())
    # The per-class accuracies moved to their own file, for readable `dvc exp show` tables.
    per_class = json.loads((pipeline / "reports/per_class.json").read_text())
    for checkpoint, accuracies in recorded.pop("per_class_accuracy").items():
        assert per_class[checkpoint] == pytest.approx(accuracies, rel=1e-6)
    # Keys added since (intervals, macro-F1, calibration) are checked by their own tests.
    assert {key: produced[key] for key in recorded} == pytest.approx(recorded, rel=1e-6)


def test_evaluate_writes_the_comparison_and_a_confusion_table(pipeline):
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert metrics["accuracy_delta"] == pytest.approx(
        metrics["finetuned_accuracy"] - metrics["baseline_accuracy"]
    )
    per_class = json.loads((pipeline / "reports/per_class.json").read_text())
    assert set(per_class["finetuned"]) >= {"airplane", "truck"}
    confusion = pd.read_csv(pipeline / "reports/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == TINY_TEST


def test_evaluate_scores_the_classical_reference_on_the_same_test_images(pipeline):
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert metrics["classical_train_images"] == TINY_TRAIN * 9 // 10  # the training split's
    assert metrics["gain_over_classical"] == pytest.approx(
        metrics["finetuned_accuracy"] - metrics["classical_accuracy"]
    )
    low, high = metrics["classical_accuracy_ci_low"], metrics["classical_accuracy_ci_high"]
    assert low <= metrics["classical_accuracy"] <= high
    first = (pipeline / "reports/report.md").read_text().split("\n\n")[1]
    expected = "It beats" if metrics["gain_over_classical_ci_low"] > 0 else "**Warning"
    assert first.startswith(expected) and f"{100 * metrics['classical_accuracy']:.2f}%" in first


def test_evaluate_draws_where_the_model_is_wrong_and_how_sure_it_is(pipeline):
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    low, high = metrics["accuracy_delta_ci_low"], metrics["accuracy_delta_ci_high"]
    assert low <= metrics["accuracy_delta"] <= high
    assert 0 <= metrics["finetuned_ece"] <= 1 and 0 <= metrics["finetuned_macro_f1"] <= 1
    pictures = sorted(p.name for p in (pipeline / "reports/evaluation").iterdir())
    assert pictures == ["confusion_matrix.png", "grad_cam.png", "reliability.png",
                        "top_losses.png"]  # fmt: skip
    for name in pictures:
        assert (pipeline / "reports/evaluation" / name).read_bytes()[:4] == b"\x89PNG"
    reliability = pd.read_csv(pipeline / "reports/reliability.csv")
    assert list(reliability.columns) == ["confidence", "baseline_accuracy", "finetuned_accuracy"]
    per_class = json.loads((pipeline / "reports/per_class.json").read_text())
    supports = sum(d["support"] for d in per_class["finetuned_details"].values())
    assert supports == metrics["test_images"]


def test_report_writes_figure_and_markdown(pipeline):
    assert (pipeline / "reports/figures/validation_curves.png").read_bytes()[:4] == b"\x89PNG"
    text = (pipeline / "reports/report.md").read_text()
    assert "](figures/validation_curves.png)" in text and "| 3-4 | 4 |" in text


def test_each_phase_writes_its_summary(pipeline):
    first = json.loads((pipeline / "reports/phase1_summary.json").read_text())
    second = json.loads((pipeline / "reports/phase2_summary.json").read_text())
    assert (first["first_epoch"], first["last_epoch"], first["kept_epoch"]) == (1, 2, 2)
    assert (second["first_epoch"], second["last_epoch"], second["kept_epoch"]) == (3, 4, 4)
    assert not first["stopped_early"] and not second["stopped_early"]
    assert first["lr"] == {"1": pytest.approx(1e-3), "2": pytest.approx(1e-3)}
    assert [g["name"] for g in second["groups"]] == ["block3", "block2"]
    assert "cached outputs" in first["inputs"]


def test_training_stages_log_each_epochs_rate_and_phase_and_their_groups(pipeline):
    client = MlflowClient(f"sqlite:///{pipeline / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-finetune")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    for stage, epochs, phase in (("phase1_extract", [1, 2], 1), ("phase2_finetune", [3, 4], 2)):
        run_id = runs[stage].info.run_id
        rates = client.get_metric_history(run_id, "lr")
        assert sorted(m.step for m in rates) == epochs
        assert {m.value for m in client.get_metric_history(run_id, "phase")} == {phase}
        assert [m.step for m in client.get_metric_history(run_id, "kept")] == [epochs[-1]]
    assert runs["phase2_finetune"].data.params["phase2.lr.block3"] == "0.001"
    assert runs["phase2_finetune"].data.params["phase2.lr.block2"] == "0.001"
    assert runs["phase2_finetune"].data.params["phase2.unfreeze.block3"] == "3"
    assert runs["phase1_extract"].data.params["phase1.lr.head"] == "0.001"


def test_one_comparison_run_carries_the_whole_execution(pipeline):
    client = MlflowClient(f"sqlite:///{pipeline / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10-finetune")
    runs = client.search_runs([experiment.experiment_id])
    comparison = [r for r in runs if r.data.tags["pipeline.role"] == "comparison"]
    assert len(comparison) == 1 and len(runs) == 7
    run = comparison[0]
    for key in ("baseline_accuracy", "finetuned_accuracy", "accuracy_delta"):
        assert key in run.data.metrics
    listed = list(client.get_run(run.info.run_id).data.metrics)  # as MLflow's UI lists them
    assert listed[:2] == ["finetuned_accuracy", "finetuned_loss"], listed
    assert listed.index("accuracy_delta") < listed.index("val_accuracy")
    for key in ("val_accuracy", "lr", "phase"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2, 3, 4], key
    kept = client.get_metric_history(run.info.run_id, "kept")
    assert sorted(m.step for m in kept) == [2, 4]
    assert run.data.params["phase2.lr"] == "0.001"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"validation_curves.png", "report.md", "metrics.json", "model_card.md"} <= artifacts
    assert {"export", "export.json"} <= artifacts


def test_stage_reports_user_errors_in_one_line_and_exits_non_zero(workdir, capsys):
    write_params(workdir / "params.yaml", {"phase2.epochs": 0})
    with pytest.raises(SystemExit) as exited:
        run_stage("phase2_finetune", lambda: phase2_finetune.main(ARGS[phase2_finetune]))
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: phase2_finetune: params.yaml: phase2.epochs: input should be greater than "
        "or equal to 1, got 0"
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]


def test_missing_upstream_checkpoint_names_the_stage_to_run(workdir, capsys, pipeline):
    write_params(workdir / "params.yaml")
    (workdir / "data").symlink_to(pipeline / "data")
    (workdir / "reports").mkdir()
    (workdir / "reports/phase1_history.csv").write_text(
        (pipeline / "reports/phase1_history.csv").read_text()
    )
    with pytest.raises(SystemExit):
        run_stage("phase2_finetune", lambda: phase2_finetune.main(ARGS[phase2_finetune]))
    assert (
        "models/phase1.keras not found; run `dvc repro phase1_extract` first"
        in capsys.readouterr().err
    )
    assert not (workdir / "mlflow.db").exists()


def test_phase2_continues_after_the_last_epoch_phase1_ran(workdir, pipeline, sample_archive):
    """Phase 1 stopped early after epoch 3 of 5 and kept epoch 2: phase 2 starts at epoch 4."""
    archive, sha256 = sample_archive
    write_params(
        workdir / "params.yaml", tiny_overrides(str(archive), sha256) | {"phase2.epochs": 1}
    )
    (workdir / "data").symlink_to(pipeline / "data")
    (workdir / "models").mkdir()
    (workdir / "models/phase1.keras").symlink_to(pipeline / "models/phase1.keras")
    history = pd.read_csv(pipeline / "reports/phase1_history.csv")
    (workdir / "reports").mkdir()
    pd.concat([history, history.tail(1).assign(epoch=3)]).to_csv(
        workdir / "reports/phase1_history.csv", index=False
    )
    phase2_finetune.main(ARGS[phase2_finetune])
    assert pd.read_csv(workdir / "reports/phase2_history.csv")["epoch"].tolist() == [4]
    summary = json.loads((workdir / "reports/phase2_summary.json").read_text())
    assert summary["first_epoch"] == summary["kept_epoch"] == 4


def test_a_stage_stopped_while_logging_its_model_resumes_with_nothing_left_to_train(
    workdir, pipeline, sample_archive, monkeypatch, caplog
):
    """Stopped after its outputs were written: the backup is kept, so the next run only
    restores the trained weights and writes the same checkpoint again."""
    archive, sha256 = sample_archive
    write_params(workdir / "params.yaml", tiny_overrides(str(archive), sha256))
    (workdir / "data").symlink_to(pipeline / "data")

    def stopped(*args, **kwargs):
        raise Interrupted("stopped by SIGTERM")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowTracker, "log_model", stopped)
        with pytest.raises(Interrupted):
            phase1_extract.main(ARGS[phase1_extract])
    assert (workdir / "models/.phase1_backup/state.json").is_file()

    caplog.clear()
    with caplog.at_level("INFO"):
        phase1_extract.main(ARGS[phase1_extract])
    assert "resuming phase1_extract at epoch 3: epochs 1-2 restored" in caplog.text
    assert not (workdir / "models/.phase1_backup").exists()
    expected = keras.saving.load_model(pipeline / "models/phase1.keras")
    resumed = keras.saving.load_model(workdir / "models/phase1.keras")
    assert weights_digest(resumed) == weights_digest(expected)


def test_offline_prepare_fails_in_seconds_naming_the_file_to_put(tmp_path):
    write_params(
        tmp_path / "params.yaml",
        {
            "data.url": "http://127.0.0.1:9/cifar-10-python.tar.gz",
            "data.archive": "data/raw/c.tar.gz",
        },
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "src.stages.prepare", *ARGS[prepare]],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"put the CIFAR-10 python archive at {tmp_path / 'data/raw/c.tar.gz'}" in errors[0]
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


def test_prepare_reads_the_cifar100_archive_at_its_default_place(workdir):
    from src.finetune.data.archives import CIFAR100
    from workbench.archives import write_archive

    sha256 = write_archive(workdir / "data/raw/cifar-100-python.tar.gz", 400, 100, 0, CIFAR100)
    write_params(
        workdir / "params.yaml",
        {"data.source": "cifar100", "data.sha256": sha256, "data.val_split": 0.25},
    )
    prepare.main(ARGS[prepare])
    info = load_info(workdir / PREPARED)
    assert info.source == "cifar100" and len(info.class_names) == 100
    sizes = {name: len(load_split(workdir / PREPARED, name)) for name in ("train", "val", "test")}
    assert sizes == {"train": 300, "val": 100, "test": 100}


def test_a_stage_tells_its_tracker_what_it_read_wrote_and_found(
    workdir, pipeline, sample_archive, monkeypatch
):
    """With the recording tracker (``tracker: none``), no store: what evaluate logged."""
    archive, sha256 = sample_archive
    overrides = tiny_overrides(str(archive), sha256) | {"tracker": "none"}
    write_params(workdir / "params.yaml", overrides)
    for name in ("data", "models"):
        (workdir / name).symlink_to(pipeline / name)
    opened = []
    monkeypatch.setitem(TRACKERS, "none", lambda: recording_backend(opened))
    evaluate.main(ARGS[evaluate])
    (tracker,) = opened
    assert tracker.status == "FINISHED" and tracker.logged_params == {
        "seed": 42,
        "evaluate.tta": 0,
        "evaluate.tta_flip": True,
        "evaluate.classical": "svc",
        "evaluate.classical_images": 60000,
    }
    read = (Path("data/prepared"), Path("models/phase1.keras"), Path("models/phase2.keras"))
    written = (
        Path("reports/metrics.json"),
        Path("reports/per_class.json"),
        Path("reports/confusion.csv"),
        Path("reports/reliability.csv"),
        Path("reports/evaluation"),
    )
    assert tracker.called("link_inputs") == [(read,)]
    assert tracker.called("record_outputs") == [(written,)]
    assert tracker.called("log_artifacts") == [
        (written[:4], False),
        ((Path("reports/evaluation"),), True),
    ]
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    del metrics["test_images"], metrics["classical_train_images"]  # counts, not results
    assert tracker.results == pytest.approx(metrics)
    (linked,) = tracker.called("link_model_metrics")
    assert set(linked[0]["finetuned_model"]) == {
        "finetuned_accuracy", "finetuned_loss", "finetuned_accuracy_ci_low",
        "finetuned_accuracy_ci_high", "finetuned_macro_f1", "finetuned_ece",
        "finetuned_val_accuracy",
    }  # fmt: skip
    assert not (workdir / "mlflow.db").exists()
