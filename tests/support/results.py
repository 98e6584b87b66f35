"""A metrics.json as evaluate writes it, for the tests of what reads one."""

METRICS = {
    "baseline_accuracy": 0.8,
    "finetuned_accuracy": 0.85,
    "accuracy_delta": 0.05,
    "baseline_loss": 0.6,
    "finetuned_loss": 0.45,
    "baseline_accuracy_ci_low": 0.792,
    "baseline_accuracy_ci_high": 0.808,
    "finetuned_accuracy_ci_low": 0.843,
    "finetuned_accuracy_ci_high": 0.857,
    "accuracy_delta_ci_low": 0.011,
    "accuracy_delta_ci_high": 0.035,
    "baseline_macro_f1": 0.79,
    "finetuned_macro_f1": 0.845,
    "baseline_ece": 0.05,
    "finetuned_ece": 0.031,
    "test_images": 10000,
}
