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
    "finetuned_val_accuracy": 0.86,
    "test_images": 10000,
}
# The classical reference of those metrics: 88% against the fine-tuned model's 85%.
CLASSICAL = {
    "classical_accuracy": 0.88,
    "classical_accuracy_ci_low": 0.874,
    "classical_accuracy_ci_high": 0.886,
    "gain_over_classical": -0.03,
    "gain_over_classical_ci_low": -0.038,
    "gain_over_classical_ci_high": -0.022,
    "classical_train_images": 45000,
}
