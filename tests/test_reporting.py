from pathlib import Path

from src.finetune.history import combined_history
from src.finetune.params import load_params
from src.finetune.reporting import render_report, verdict
from tests.conftest import ROOT
from tests.test_history import frame

METRICS = {
    "baseline_accuracy": 0.8,
    "finetuned_accuracy": 0.85,
    "accuracy_delta": 0.05,
    "baseline_loss": 0.6,
    "finetuned_loss": 0.45,
    "test_images": 10000,
    "per_class_accuracy": {
        "baseline": {"cat": 0.5, "dog": None},
        "finetuned": {"cat": 0.75, "dog": None},
    },
}


def test_verdict_follows_the_sign_of_the_delta():
    assert verdict(0.0512) == "Fine-tuning raised test accuracy by 5.12 points"
    assert verdict(-0.01) == "Fine-tuning lowered test accuracy by 1.00 points"
    assert verdict(0.0001) == "Fine-tuning left test accuracy unchanged"


def test_report_has_the_numbers_the_figure_and_the_per_class_table():
    history = combined_history(frame(1, 15), frame(16, 10))
    text = render_report(
        METRICS,
        history,
        load_params(ROOT / "params.yaml"),
        Path("reports/figures/validation_curves.png"),
        Path("reports/report.md"),
    )
    assert "raised test accuracy by 5.00 points (80.00% -> 85.00% on 10000 test images)" in text
    assert "| 1-15 | 80.00% | 0.6000 |" in text
    assert "| 16-25 | 85.00% | 0.4500 |" in text
    assert "last 40 base layers unfrozen" in text and "lr 1e-05" in text
    assert "](figures/validation_curves.png)" in text
    assert "| cat | 50.00% | 75.00% | +25.00 points |" in text
    assert "| dog | n/a | n/a | n/a |" in text
