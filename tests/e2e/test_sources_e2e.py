"""Your own images and other backbones through the real `dvc`, and the logged MLflow model
answering a real request from `mlflow models serve`."""

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
from tests.support.params import write_params
from tests.support.projects import local_store, make_project
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e
FOLDER = {"data.source": "folder", "phase1.epochs": 1, "phase2.epochs": 1, "data.test_split": 0.25}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("folder"), FOLDER, images_per_class=10)


@pytest.fixture(scope="module")
def repro(repo) -> str:
    return repro_and_commit(repo)


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
    write_params(
        repo / "params.yaml", FOLDER | _project_params(repo) | {"model.backbone": "resnet50v2"}
    )
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


def _project_params(repo: Path) -> dict:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((repo / "params.yaml").read_text())["data"]
    return {"data.archive": data["archive"], "data.sha256": data["sha256"], "model.weights": "none",
            "phase1.batch_size": 32, "phase2.batch_size": 32, "phase2.lr": 1e-3}  # fmt: skip


def test_the_logged_model_answers_a_real_request(repo, repro, tmp_path):
    client = local_store(repo)
    experiment = client.get_experiment_by_name("images-finetune")
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
        status, answer = _ask(url, predict_output(repo, "--request", "data/images/dog"))
        assert status == 200, answer
        images = json.loads(predict_output(repo, "--request", "data/images/dog"))["inputs"]
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
