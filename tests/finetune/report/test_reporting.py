from pathlib import Path

from src.finetune.data.checks import DataChecks, Finding
from src.finetune.evaluation.metrics import Metrics, PerClass
from src.finetune.export.results import Checked, ExportReport
from src.finetune.params import Phase, load_params
from src.finetune.report.card import Provenance, render_model_card
from src.finetune.report.document import render_report, verdict
from src.finetune.training.history import Summary, combined_history
from tests.support.params import project_params, write_params
from tests.support.results import CLASSICAL, METRICS
from tests.support.training import frame

PER_CLASS = {
    "baseline": {"cat": 0.5, "dog": None},
    "finetuned": {"cat": 0.75, "dog": None},
    "finetuned_details": {
        "cat": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4},
        "dog": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
    },
    "most_confused": [{"actual": "cat", "predicted": "dog", "count": 1, "share": 0.25}],
}


def checked(format, size_mb, accuracy, agreement=1.0):
    return Checked(
        format=format, path=f"models/export/{format}", size_mb=size_mb, accuracy=accuracy,
        agreement=agreement, latency_ms_batch1=2.5, latency_ms_batch32=0.75,
    )  # fmt: skip


EXPORTS = ExportReport(
    test_images=10000,
    keras=checked("keras", 16.0, 0.85),
    exports=[checked("onnx", 13.0, 0.85), checked("litert_int8", 4.0, 0.845, 0.99)],
    failed={"litert": "converter: unsupported op"},
)


def test_verdict_follows_the_sign_of_the_delta():
    assert verdict(0.0512) == "Fine-tuning raised test accuracy by 5.12 points"
    assert verdict(-0.01) == "Fine-tuning lowered test accuracy by 1.00 points"
    assert verdict(0.0001) == "Fine-tuning left test accuracy unchanged"


def summary(phase, first, last, kept, stopped=False, groups=()):
    return Summary(
        phase=phase,
        first_epoch=first,
        last_epoch=last,
        kept_epoch=kept,
        stopped_early=stopped,
        groups=list(groups),
        inputs="training head on the frozen part's cached outputs",
        lr=dict.fromkeys(range(first, last + 1), 1e-3),
    )


SUMMARIES = {
    Phase.EXTRACT: summary(Phase.EXTRACT, 1, 15, 15),
    Phase.FINETUNE: summary(Phase.FINETUNE, 16, 25, 25),
}


CHECKS = DataChecks(
    images={"train": 90, "val": 10, "test": 20},
    per_class={s: {"cat": 1, "dog": 1} for s in ("train", "val", "test")},
    imbalance_ratio=1.5,
    duplicates=[Finding(kind="exact", a="train", b="test", pairs=2,
                        examples=[("train #1", "test #4"), ("train #3", "test #9")])],
    warnings=["2 identical image pair(s) between train and test"],
)  # fmt: skip


def report(
    params, metrics=METRICS, summaries=SUMMARIES, per_class=PER_CLASS, exports=EXPORTS, checks=None
):
    return render_report(
        Metrics(**metrics),
        PerClass(**per_class),
        combined_history(frame(1, 15), frame(16, 10)),
        summaries,
        params,
        exports,
        checks or CHECKS,
        title="CIFAR-10 transfer learning",
        figure=Path("reports/figures/validation_curves.png"),
        report=Path("reports/report.md"),
        pictures=Path("reports/evaluation"),
    )


def test_report_has_the_numbers_the_figure_and_the_per_class_table():
    text = report(project_params())
    assert text.startswith("# Feature extraction vs fine-tuning: CIFAR-10")
    assert "raised test accuracy by 5.00 points (80.00% -> 85.00% on 10000 test images)" in text
    assert "| 1-15 | 15 | 80.00% | 0.6000 |" in text
    assert "| 16-25 | 25 | 85.00% | 0.4500 |" in text
    assert "the head and the last 40 layers of the base, BatchNorm frozen (Adam lr 1e-05)" in text
    assert "](figures/validation_curves.png)" in text
    assert "Base: EfficientNetV2B0, ImageNet weights from keras.applications" in text
    assert "| cat | 50.00% | 75.00% | +25.00 points |" in text
    assert "| dog | n/a | n/a | n/a |" in text
    assert "- Augmentation (both phases): none." in text
    assert "- Test-time augmentation: off." in text
    assert "TTA" not in text.split("## What ran")[0]


def test_a_class_name_with_a_bar_keeps_the_table_whole():
    detail = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    per_class = {side: {"a|b": 0.5} for side in ("baseline", "finetuned")} | {
        "finetuned_details": {"a|b": detail},
        "most_confused": [{"actual": "a|b", "predicted": "a|b", "count": 1, "share": 0.5}],
    }
    text = report(project_params(), per_class=per_class)
    assert "| a\\|b | 50.00% | 50.00% | +0.00 points |" in text
    assert "| a\\|b | 0.500 | 0.500 | 0.500 | 2 |" in text


def test_report_names_every_technique_that_ran(tmp_path):
    params = load_params(
        write_params(
            tmp_path / "params.yaml",
            {
                "augment.flip": True,
                "augment.crop_pad": 4,
                "phase1.early_stopping": 3,
                "phase2.optimizer": "adamw",
                "phase2.weight_decay": 0.05,
                "phase2.schedule": "cosine",
                "phase2.warmup_epochs": 2,
                "phase2.label_smoothing": 0.1,
                "phase2.ema": 0.999,
                "evaluate.tta": 2,
            },
        )
    )
    groups = [
        {"name": "block6", "lr": 1e-4, "first_epoch": 13},
        {"name": "block5", "lr": 5e-5, "first_epoch": 15},
    ]
    summaries = {
        Phase.EXTRACT: summary(Phase.EXTRACT, 1, 12, 9, stopped=True),
        Phase.FINETUNE: summary(Phase.FINETUNE, 13, 22, 22, groups=groups),
    }
    metrics = METRICS | {
        "baseline_accuracy_tta": 0.81,
        "finetuned_accuracy_tta": 0.87,
        "accuracy_delta_tta": 0.06,
        "finetuned_val_accuracy_tta": 0.87,
    }
    text = report(params, metrics, summaries)
    assert (
        "| test accuracy with TTA |" in text and "| 87.00% |" in text and "+6.00 points |" in text
    )
    assert "horizontal flips, random crops after padding 4 px" in text
    assert "early stopping (patience 3): stopped after epoch 12, kept epoch 9" in text
    assert "AdamW lr 1e-05, weight decay 0.05, cosine after 2 warm-up epoch(s)" in text
    assert "label smoothing 0.1" in text
    assert "weights averaged (EMA decay 0.999), the average kept" in text
    assert "block6 0.0001 from epoch 13, block5 5e-05 from epoch 15" in text
    assert "- Test-time augmentation: 2 extra view(s)." in text


def test_report_lists_each_export_measured_and_each_failure():
    text = report(project_params())
    assert "## Exports" in text
    assert (
        "| onnx | ONNX Runtime | `models/export/onnx` | 13.0 MB | 85.00% | 100.00% | 2.50 | 0.75 |"
        in text
    )
    assert (
        "| litert_int8 | LiteRT | `models/export/litert_int8` | 4.0 MB | 84.50% | 99.00% |" in text
    )
    assert "- litert failed: converter: unsupported op" in text


def test_report_says_when_nothing_was_exported():
    nothing = ExportReport(test_images=10, keras=checked("keras", 1.0, 0.5), exports=[])
    assert "None (export.formats is empty)." in report(project_params(), exports=nothing)


def card(params, experiment="tta-2", metrics=METRICS):
    provenance = Provenance(
        image_shape=(32, 32, 3), train_images=45000, val_images=5000, commit="abc1234",
        experiment=experiment,
    )  # fmt: skip
    return render_model_card(
        params, Metrics(**metrics), PerClass(**PER_CLASS), SUMMARIES, EXPORTS, provenance
    )


def test_the_model_card_says_what_the_model_is_how_good_where_it_runs_and_how_to_rebuild():
    text = card(project_params())
    assert text.startswith("---\nlibrary_name: keras\npipeline_tag: image-classification\n")
    assert "EfficientNetV2B0 (ImageNet weights from keras.applications" in text
    assert "- Classes: cat, dog." in text
    assert "45000 training, 5000 validation and 10000 test images" in text
    assert "- Input: 32x32 images of raw pixels 0-255 (3 channel(s))" in text
    assert "85.00% accuracy (loss 0.4500); the frozen-base baseline had 80.00%." in text
    assert "| cat | 75.00% |" in text and "| dog | n/a |" in text
    assert "| litert_int8 | LiteRT | `models/export/litert_int8` | 4.0 MB |" in text
    assert "- litert failed: converter: unsupported op" in text
    assert "It has never seen any other class" in text
    assert "at git commit `abc1234`, seed 42" in text
    assert "    dvc exp apply tta-2\n    dvc repro" in text
    assert "dvc exp apply" not in card(project_params(), experiment=None)


def test_the_model_card_gives_what_evaluate_measured_with_the_classical_reference():
    text = card(project_params(), metrics=METRICS | CLASSICAL)
    how_good = text.split("## How good it is")[1].split("## Where it runs")[0]
    assert how_good.lstrip().startswith("**Warning: the fine-tuned model does not beat")
    assert "| finetuned | 85.00% (84.30% to 85.70%) | 0.8450 | 0.0310 |" in how_good
    assert "| classical reference | 88.00% (87.40% to 88.60%) | | |" in how_good


def test_the_model_card_says_how_images_are_read():
    text = card(project_params())
    assert "scaled so the shorter side is 32 pixels and the longer side cropped to the centre" in (
        " ".join(text.split())
    )
    assert "aspect ratio" not in text


def test_report_says_whether_fine_tuning_helped_beyond_noise():
    text = report(project_params())
    assert (
        "Beyond noise: 95% interval +1.10 to +3.50 points (paired bootstrap of the test "
        "images)." in text
    )
    within = METRICS | {"accuracy_delta_ci_low": -0.004, "accuracy_delta_ci_high": 0.02}
    assert "Within noise: 95% interval -0.40 to +2.00 points" in report(
        project_params(), metrics=within
    )
    assert "| finetuned | 85.00% (84.30% to 85.70%) | 0.8450 | 0.0310 |" in text


def test_the_report_opens_with_a_warning_when_the_classical_reference_is_as_good():
    text = report(project_params(), metrics=METRICS | CLASSICAL)
    first = text.split("\n\n")[1]
    assert first == (
        "**Warning: the fine-tuned model does not beat the classical reference beyond noise**: "
        "fine-tuned 85.00% against 88.00% for the classical reference, an RBF-kernel SVM (C 10) "
        "on 100 principal components of the pixels (24x24), fitted on 45,000 training images "
        "(gain -3.00 points, 95% interval -3.80 to -2.20). On these data the network is not "
        "worth its compute; see docs/quality.md for recipes that beat it."
    )
    assert "| classical reference | 88.00% (87.40% to 88.60%) | | |" in text
    # within noise is no better: a gain whose interval holds zero is warned about too
    even = CLASSICAL | {"gain_over_classical_ci_low": -0.001, "gain_over_classical_ci_high": 0.01}
    assert "**Warning" in report(project_params(), metrics=METRICS | even)


def test_the_report_says_so_when_the_model_beats_the_classical_reference():
    ahead = CLASSICAL | {
        "classical_accuracy": 0.8, "gain_over_classical": 0.05,
        "gain_over_classical_ci_low": 0.04, "gain_over_classical_ci_high": 0.06,
    }  # fmt: skip
    first = report(project_params(), metrics=METRICS | ahead).split("\n\n")[1]
    assert first.startswith("It beats the classical reference beyond noise: fine-tuned 85.00%")
    assert "does not beat" not in report(project_params(), metrics=METRICS | ahead)


def test_without_the_classical_reference_the_report_does_not_mention_it():
    text = report(project_params())
    assert "classical" not in text and text.split("\n\n")[1].startswith("Fine-tuning raised")


def test_report_gives_precision_recall_and_the_most_confused_pairs():
    text = report(project_params())
    assert "| cat | 1.000 | 0.750 | 0.857 | 4 |" in text
    assert "- cat -> dog: 1 (25.00%)" in text
    none = PER_CLASS | {"most_confused": []}
    assert "No test image was mistaken" in report(project_params(), per_class=none)


def test_report_links_the_pictures_evaluate_drew():
    text = report(project_params())
    assert "## Where the model is wrong" in text
    for name in ("top_losses", "grad_cam", "reliability", "confusion_matrix"):
        assert f"](evaluation/{name}.png)" in text


def test_report_gives_what_the_data_checks_found():
    text = report(project_params())
    assert "Images: 90 train, 10 val, 20 test; the largest class has 1.5 times" in text
    assert "- exact duplicates in train and test: 2 (e.g. train #1 = test #4)" in text
    assert "- Warning: 2 identical image pair(s) between train and test" in text


def test_report_says_what_dedupe_removed():
    deduped = CHECKS.model_copy(update={"removed": {"test": 2}, "duplicates": [], "warnings": []})
    text = report(project_params(), checks=deduped)
    assert "data.dedupe removed 2 from test (the later copy of each duplicate)." in text
    assert "No duplicate images within or across the splits." in text
