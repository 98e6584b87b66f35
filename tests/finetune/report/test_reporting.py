from pathlib import Path

from src.finetune.evaluation.metrics import Metrics, PerClass
from src.finetune.params import Phase, load_params
from src.finetune.report.document import render_report, verdict
from src.finetune.training.history import Summary, combined_history
from tests.support.params import project_params, write_params
from tests.support.training import frame

METRICS = {
    "baseline_accuracy": 0.8,
    "finetuned_accuracy": 0.85,
    "accuracy_delta": 0.05,
    "baseline_loss": 0.6,
    "finetuned_loss": 0.45,
    "test_images": 10000,
}
PER_CLASS = {"baseline": {"cat": 0.5, "dog": None}, "finetuned": {"cat": 0.75, "dog": None}}


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


def report(params, metrics=METRICS, summaries=SUMMARIES, per_class=PER_CLASS):
    return render_report(
        Metrics(**metrics),
        PerClass(**per_class),
        combined_history(frame(1, 15), frame(16, 10)),
        summaries,
        params,
        title="CIFAR-10 transfer learning",
        figure=Path("reports/figures/validation_curves.png"),
        report=Path("reports/report.md"),
    )


def test_report_has_the_numbers_the_figure_and_the_per_class_table():
    text = report(project_params())
    assert text.startswith("# Feature extraction vs fine-tuning: CIFAR-10")
    assert "raised test accuracy by 5.00 points (80.00% -> 85.00% on 10000 test images)" in text
    assert "| 1-15 | 15 | 80.00% | 0.6000 |" in text
    assert "| 16-25 | 25 | 85.00% | 0.4500 |" in text
    assert "last 40 base layers unfrozen" in text and "(Adam lr 1e-05)" in text
    assert "](figures/validation_curves.png)" in text
    assert "Base: EfficientNetV2B0, ImageNet weights from keras.applications" in text
    assert "| cat | 50.00% | 75.00% | +25.00 points |" in text
    assert "| dog | n/a | n/a | n/a |" in text
    assert "- Augmentation (both phases): none." in text
    assert "- Test-time augmentation: off." in text
    assert "TTA" not in text.split("## What ran")[0]


def test_a_class_name_with_a_bar_keeps_the_table_whole():
    per_class = {side: {"a|b": 0.5} for side in ("baseline", "finetuned")}
    text = report(project_params(), per_class=per_class)
    assert "| a\\|b | 50.00% | 50.00% | +0.00 points |" in text


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
    }
    text = report(params, metrics, summaries)
    assert (
        "| test accuracy with TTA |" in text and "| 87.00% |" in text and "+6.00 points |" in text
    )
    assert "horizontal flips, random crops after padding 4 px" in text
    assert "early stopping (patience 3): stopped after epoch 12, kept epoch 9" in text
    assert "AdamW lr 1e-05, weight decay 0.05, cosine after 2 warm-up epoch(s)" in text
    assert "label smoothing 0.1" in text
    assert "block6 0.0001 from epoch 13, block5 5e-05 from epoch 15" in text
    assert "- Test-time augmentation: 2 extra view(s)." in text
