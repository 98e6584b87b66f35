"""Log a pipeline's outputs to the tracker after the fact, e.g. once a dead tracking server
is back.

    python -m src.relog

A stage whose tracking server went away finishes its training and writes its outputs
without it. This reads what the pipeline wrote, at the paths the report stage declares (both
histories and summaries, the metrics, the figure, the report), and logs it as one comparison
run: the params, every epoch's metrics, the headline numbers and the files. Running it again
for the same outputs fills in what is missing and adds nothing twice.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pandas as pd

from src.finetune.entrypoint import run_stage
from src.finetune.errors import PipelineError
from src.finetune.evaluation.metrics import read_metrics
from src.finetune.files import content_hash
from src.finetune.params import Params, Phase, load_params
from src.finetune.tracking import Status
from src.finetune.training.history import (
    kept_epochs,
    read_history,
    read_summary,
    with_learning_rates,
)
from src.stages.report import STAGE as REPORT

NAME = "relog"


def report_paths() -> dict[str, Path]:
    """Every file the report stage reads or writes: every output the pipeline makes."""
    return {name: Path(file.path) for name, file in REPORT.files.items()}


def relog(params: Params, paths: dict[str, Path]) -> str:
    """Log the outputs that exist to one comparison run; returns its id."""
    from src.finetune.tracking.mlflow import open_execution_tracker  # MLflow loads in seconds

    present = {name: path for name, path in paths.items() if path.is_file()}
    phases = [phase for phase in Phase if f"{phase}-history" in present]
    if not phases:
        raise PipelineError(
            f"nothing to log: {paths['phase1-history']} not found; run `dvc repro` or `dvc pull`"
        )
    histories = [read_history(present[f"{p}-history"]).assign(phase=p.number) for p in phases]
    summaries = {
        p: read_summary(present[f"{p}-summary"]) for p in Phase if f"{p}-summary" in present
    }
    history = with_learning_rates(pd.concat(histories, ignore_index=True), summaries)
    metrics = read_metrics(present["metrics"]) if "metrics" in present else None

    # The outputs' content names the run, so a second relog of them finds the first one.
    key = hashlib.md5(
        "".join(content_hash(present[name]) for name in sorted(present)).encode()
    ).hexdigest()
    # Not wrapped in SafeTracker: logging is this tool's only job, so a failure is its exit.
    tracker = open_execution_tracker(params, f"relog-{key}", name=f"relog-{key[:8]}")
    tracker.log_execution(history, kept_epochs(summaries), metrics)
    tracker.log_artifacts(list(present.values()))
    tracker.close(Status.FINISHED)
    return tracker.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    from src.finetune.tracking.mlflow.store import tracking_uri

    run_id = relog(load_params(), report_paths())
    print(f"logged the pipeline's outputs to run {run_id} at {tracking_uri()}")


if __name__ == "__main__":
    run_stage(NAME, main)
