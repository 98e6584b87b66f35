"""``reports/model_card.md``: what the fine-tuned model is, how good it is, where it runs and
how to make it again, in the manner of Hugging Face and timm model cards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from src.finetune.evaluation.metrics import Metrics, PerClass
from src.finetune.export.results import ExportReport
from src.finetune.params import Params, Phase
from src.finetune.report.document import (
    _pct,
    certainty_lines,
    classical_lines,
    exports_table,
    recipe_lines,
    title,
)
from src.finetune.training.history import Summary


@dataclass(frozen=True)
class Provenance:
    """Where the model came from: the split sizes and the code that trained it."""

    image_shape: tuple[int, ...]  # the prepared images', which the model takes
    train_images: int
    val_images: int
    commit: str | None
    experiment: str | None  # the DVC experiment's name, when `dvc exp run` made it


def render_model_card(
    params: Params,
    metrics: Metrics,
    per_class: PerClass,
    summaries: Mapping[Phase, Summary],
    exports: ExportReport,
    provenance: Provenance,
) -> str:
    backbone, classes = params.backbone, list(per_class.finetuned)
    height, width = provenance.image_shape[:2]
    reproduce = (
        [f"    dvc exp apply {provenance.experiment}", "    dvc repro"]
        if provenance.experiment
        else ["    dvc repro"]
    )
    commit = f"at git commit `{provenance.commit}`" if provenance.commit else "(no git commit)"
    lines = [
        "---",
        "library_name: keras",
        "pipeline_tag: image-classification",
        "tags: [image-classification, transfer-learning, dvc, mlflow]",
        "---",
        "",
        f"# Model card: {title(params)}",
        "",
        "## What it is",
        "",
        f"An image classifier for {len(classes)} classes: {backbone.title} "
        f"({backbone.weights_source(params.model.weights)}) with a new head, trained in two "
        f"phases: the head on the frozen base, then {params.finetuned_part()}.",
        "",
        f"- Input: {height}x{width} images of raw pixels 0-255 ({provenance.image_shape[2]} "
        "channel(s)); the pipeline's readers resize any image to that size "
        f"(the network itself works at {params.data.image_size}x{params.data.image_size}); "
        "the preprocessing is inside the model.",
        f"- Output: {len(classes)} class probabilities (softmax); the class names travel "
        "with every file of the model.",
        f"- Classes: {', '.join(c.replace('|', '/') for c in classes)}.",
        f"- Data: {_data_name(params)}; {provenance.train_images} training, "
        f"{provenance.val_images} validation and {metrics.test_images} test images.",
        "",
        "### Recipe",
        "",
        *recipe_lines(params, summaries),
        "",
        "## How good it is",
        "",
        *classical_lines(metrics, params),
        f"On the {metrics.test_images} held-out test images: {_pct(metrics.finetuned_accuracy)} "
        f"accuracy (loss {metrics.finetuned_loss:.4f}); the frozen-base baseline had "
        f"{_pct(metrics.baseline_accuracy)}."
        + (
            f" With {metrics.tta} test-time augmentation view(s): "
            f"{_pct(metrics.finetuned_accuracy_tta)}."
            if metrics.tta
            else ""
        ),
        "",
        *certainty_lines(metrics),
        "",
        "| class | test accuracy |",
        "| --- | ---: |",
        *(f"| {n.replace('|', '/')} | {_pct(a)} |" for n, a in per_class.finetuned.items()),
        "",
        "## Where it runs",
        "",
        *exports_table(exports),
        "",
        "Latency: this machine's CPU, median of repeated calls, per image.",
        "",
        "## Intended use and limits",
        "",
        f"- Made to tell these {len(classes)} classes apart in images like its training data. "
        "It has never seen any other class: shown one, it still answers with one of these, "
        "often with high probability. Check the probability before you trust an answer.",
        "- Images are read the way `prepare` reads a folder: scaled so the shorter side is "
        f"{min(height, width)} pixels and the longer side cropped to the centre, never "
        "stretched; what lies outside that centre, and details smaller than a pixel at that "
        "size, are not seen.",
        "- Accuracy was measured on one test split of the same source as the training data; "
        "expect less on images from elsewhere (another camera, light, background).",
        "",
        "## How to reproduce it",
        "",
        f"Trained by this project's DVC pipeline {commit}, seed {params.seed}:",
        "",
        *reproduce,
        "",
        "`dvc.lock` records the hash of every input and output; `params.yaml` every setting.",
    ]
    return "\n".join(lines) + "\n"


def _data_name(params: Params) -> str:
    return title(params).split(" · ")[0]
