"""Stage 5: learning curves over all epochs with the fine-tuning start marked, and report.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from src.finetune.errors import PipelineError, run_stage
from src.finetune.files import write_text
from src.finetune.history import combined_history, read_history
from src.finetune.params import load_params
from src.finetune.plots import plot_learning_curves
from src.finetune.reporting import render_report
from src.finetune.tracking import headline_series, history_series, track_stage

STAGE = "report"
PARAMS = ("model.weights", "phase1.lr", "phase2.lr", "phase2.unfreeze_last")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase1-history", type=Path, required=True)
    parser.add_argument("--phase2-history", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="evaluate's metrics JSON")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--report", type=Path, required=True, help="Markdown report to write")
    args = parser.parse_args(argv)
    params = load_params()
    history = combined_history(read_history(args.phase1_history), read_history(args.phase2_history))
    metrics = _read_metrics(args.metrics)

    with track_stage(STAGE, params, PARAMS) as tracker:
        tracker.link_inputs(args.phase1_history, args.phase2_history, args.metrics)
        plot_learning_curves(history, args.figure)
        write_text(args.report, render_report(metrics, history, params, args.figure, args.report))
        # The comparison run gets the whole curve and the headline numbers even when DVC
        # reused phase 1 (or more) from its cache in this execution.
        tracker.fill_comparison(history_series(history) | headline_series(metrics))
        tracker.record_outputs(args.figure, args.report)
        tracker.log_artifacts(args.figure, args.report, args.metrics, comparison=True)
        tracker.log_artifacts(args.phase1_history, args.phase2_history, comparison=True)


def _read_metrics(path: Path) -> dict:
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro evaluate` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PipelineError(
            f"{path} is not valid JSON ({error}); run `dvc repro evaluate`"
        ) from None


if __name__ == "__main__":
    run_stage(STAGE, main)
