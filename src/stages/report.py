"""Stage 5: learning curves over all epochs with the fine-tuning start marked, and report.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from src.finetune.errors import run_stage
from src.finetune.files import atomic_path
from src.finetune.history import (
    combined_history,
    kept_epochs,
    read_history,
    read_summary,
    with_learning_rates,
)
from src.finetune.metrics import read_metrics, read_per_class
from src.finetune.params import load_params
from src.finetune.plots import plot_learning_curves
from src.finetune.reporting import render_report, title
from src.finetune.tracking import comparison_series, track_stage

STAGE = "report"
PARAMS = ("data.source", "data.folder", "model", "augment", "phase1", "phase2", "evaluate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase1-history", type=Path, required=True)
    parser.add_argument("--phase2-history", type=Path, required=True)
    parser.add_argument("--phase1-summary", type=Path, required=True)
    parser.add_argument("--phase2-summary", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="evaluate's metrics JSON")
    parser.add_argument("--per-class", type=Path, required=True, help="evaluate's per-class JSON")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--report", type=Path, required=True, help="Markdown report to write")
    args = parser.parse_args(argv)
    params = load_params()
    # Every input is read and checked before anything is written.
    history = combined_history(read_history(args.phase1_history), read_history(args.phase2_history))
    summaries = {1: read_summary(args.phase1_summary), 2: read_summary(args.phase2_summary)}
    metrics = read_metrics(args.metrics)
    per_class = read_per_class(args.per_class)
    history = with_learning_rates(history, summaries)
    kept = kept_epochs(summaries)

    with track_stage(STAGE, params, PARAMS) as tracker:
        inputs = (args.phase1_history, args.phase2_history, args.phase1_summary)
        tracker.link_inputs(*inputs, args.phase2_summary, args.metrics, args.per_class)
        text = render_report(
            metrics,
            per_class,
            history,
            summaries,
            params,
            title=title(params),
            figure=args.figure,
            report=args.report,
        )
        # The figure and the report appear together or not at all.
        with atomic_path(args.figure) as figure, atomic_path(args.report) as report:
            plot_learning_curves(history, kept, title(params), figure)
            report.write_text(text)
        # The comparison run gets the whole curve and the headline numbers even when DVC
        # reused phase 1 (or more) from its cache in this execution.
        tracker.fill_comparison(comparison_series(history, kept, metrics))
        tracker.record_outputs(args.figure, args.report)
        tracker.log_artifacts(
            args.figure, args.report, args.metrics, args.per_class, comparison=True
        )
        tracker.log_artifacts(*inputs, args.phase2_summary, comparison=True)


if __name__ == "__main__":
    run_stage(STAGE, main)
