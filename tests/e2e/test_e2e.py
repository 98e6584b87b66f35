"""The real thing: `dvc repro` and `dvc exp run` on a folder of your own images in a temporary
git repository, MLflow behind, and the logged model answering a real request from
`mlflow models serve`. (The tiny CIFAR-style archive goes through the real `dvc` in the
resume, signals, team and tuning tests.)"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support.commands import command_env, repro_and_commit, run
from tests.support.images import write_image
from tests.support.params import edit_params
from tests.support.projects import local_store, make_project, runs_by_execution
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e
EXPERIMENT_NAME = "images-finetune"  # the data source's name
FOLDER = {"data.source": "folder", "data.test_split": 0.25}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"), FOLDER, images_per_class=10)


DETERMINISTIC = ("reports/metrics.json", "reports/phase1_history.csv", "reports/phase2_history.csv")
TRAIN_AND_SCORE = ("phase1_extract", "phase2_finetune", "evaluate")


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
    (execution,) = runs_by_execution(local_store(repo), EXPERIMENT_NAME)
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


def test_a_folder_of_images_runs_the_whole_pipeline_named_by_class(repo, repro):
    assert "Running stage 'report'" in repro
    classes = json.loads((repo / "data/prepared/classes.json").read_text())
    assert classes["class_names"] == ["cat", "dog", "fox"] and classes["source"] == "folder"
    per_class = json.loads((repo / "reports/per_class.json").read_text())
    assert set(per_class["finetuned"]) == {"cat", "dog", "fox"}
    report = (repo / "reports/report.md").read_text()
    assert "images (your images) · TinyNet, random weights" in report
    assert "| fox |" in report


def test_adding_an_image_reruns_prepare(repo, repro):
    assert run(repo, "dvc", "status").strip().endswith("Data and pipelines are up to date.")
    write_image(repo / "data/images/cat/new.png", "RGB", (40, 40), 90)
    status = run(repo, "dvc", "status")
    assert "prepare:" in status and "data/images" in status
    (repo / "data/images/cat/new.png").unlink()


def test_another_backbone_reruns_from_phase1_on(repo, repro):
    edit_params(repo / "params.yaml", {"model.backbone": "resnet50v2"})
    try:
        status = run(repo, "dvc", "status")
        dry = run(repo, "dvc", "repro", "--dry")
    finally:
        run(repo, "git", "checkout", "params.yaml")
    # A dry run changes no output, so it lists the stages that change first; the others
    # depend on phase 1's checkpoint (tests/test_dvc_yaml.py) and follow it.
    assert "Stage 'prepare' didn't change" in dry
    assert "Running stage 'phase1_extract'" in dry
    assert "prepare:" not in status
    assert "modified:           model" in status.split("phase1_extract:")[1].split("report:")[0]


def test_the_logged_model_answers_a_real_request(repo, repro, tmp_path):
    client = local_store(repo)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    (comparison,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`pipeline.role` = 'comparison'"
    )
    outputs = client.get_run(comparison.info.run_id).outputs.model_outputs
    models = {client.get_logged_model(o.model_id).name: o.model_id for o in outputs}
    port = free_port()
    env = command_env(MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
         f"models:/{models['finetuned_model']}", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        url = f"http://127.0.0.1:{port}/invocations"
        request = predict_output(repo, "--request", "data/images/dog")
        status, answer = _ask(url, request)
        assert status == 200, answer
        images = json.loads(request)["inputs"]
        refusals = {
            "empty": _ask(url, json.dumps({"inputs": []})),
            "nan": _ask(url, json.dumps({"inputs": [np.full_like(images[0], np.nan).tolist()]})),
            "inf": _ask(url, json.dumps({"inputs": [np.full_like(images[0], np.inf).tolist()]})),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = server.stderr.read().decode()
    for notice in ("cuInit", "cudart_stub", "oneDNN custom operations", "cpu_feature_guard"):
        assert notice not in log, f"TensorFlow's start-up notice {notice!r} in the serving log"
    predictions = answer["predictions"]
    assert len(predictions) == 10
    csv_rows = [
        row.rsplit(",", 2) for row in predict_output(repo, "data/images/dog").splitlines()[1:]
    ]
    for prediction, (_, label, probability) in zip(predictions, csv_rows, strict=True):
        assert prediction["label"] == label and prediction["top"][0]["label"] == label
        assert prediction["probability"] == pytest.approx(float(probability), abs=1e-5)
        assert len(prediction["top"]) == 3, "top 5 by default, at most the 3 classes"
    # An empty batch never reaches the model: MLflow's schema check answers it, naming the
    # tensor shape the signature asks for.
    expected = {"empty": "(-1, 32, 32, 3)", "nan": "NaN or infinite", "inf": "NaN or infinite"}
    for case, (status, body) in refusals.items():
        assert status == 400 and expected[case] in body["message"], (case, body)


def _ask(url: str, body: str) -> tuple[int, dict]:
    """POST a JSON body; the HTTP status and the decoded answer, whatever the status."""
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def predict_output(repo: Path, *args: str) -> str:
    """What `python -m src.predict` prints on standard output."""
    command = [sys.executable, "-m", "src.predict", "--model", "models/phase2.keras", *args]
    result = subprocess.run(
        command, cwd=repo, env=command_env(), capture_output=True, text=True, check=True
    )
    return result.stdout


def _wait_until_up(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read().decode()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("mlflow models serve did not start")


def test_forced_repro_with_the_same_params_gives_identical_results(repo, repro):
    before = {path: (repo / path).read_bytes() for path in DETERMINISTIC}
    # The stages that write the files compared, each in a process of its own as before
    # (prepare's split is the seed's alone, as tests/finetune/data/test_folders.py checks;
    # export and report write none of these files).
    run(repo, "dvc", "repro", "--force", "--single-item", *TRAIN_AND_SCORE)
    after = {path: (repo / path).read_bytes() for path in DETERMINISTIC}
    assert after == before


def test_exp_run_with_a_phase2_param_reuses_phase1(repo, repro, experiment):
    assert "Stage 'prepare' didn't change, skipping" in experiment
    assert "Stage 'phase1_extract' didn't change, skipping" in experiment
    for stage in ("phase2_finetune", "evaluate", "export", "report"):
        assert f"Running stage '{stage}'" in experiment

    executions = runs_by_execution(local_store(repo), EXPERIMENT_NAME)
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
