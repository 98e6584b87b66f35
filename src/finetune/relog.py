"""Log a pipeline's outputs to MLflow after the fact, e.g. once a dead tracking server is back.

    python -m src.finetune.relog

A stage whose tracking server went away finishes its training and writes its outputs
without it. This reads what the pipeline wrote, at the paths dvc.yaml gives the report
stage (both histories, the metrics, the figure, the report), and logs it as one comparison
run: the params, every epoch's metrics, the headline numbers and the files. Running it
again for the same outputs fills in what is missing and adds nothing twice.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
from pathlib import Path

import pandas as pd
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from src.finetune.errors import PipelineError, run_stage
from src.finetune.files import content_hash
from src.finetune.history import kept_epochs, read_history, read_summary, with_learning_rates
from src.finetune.metrics import read_metrics
from src.finetune.params import Params, load_params
from src.finetune.tracking import (
    TAG_EXECUTION,
    check_server,
    close_orphaned_runs,
    comparison_run,
    comparison_series,
    context_tags,
    experiment_id_for,
    fill_missing_steps,
    open_store,
    tracking_uri,
)

NAME = "relog"


def report_paths(pipeline: Path = Path("dvc.yaml")) -> dict[str, Path]:
    """The report stage's ``--name path`` arguments: every output the pipeline makes."""
    command = YAML(typ="safe").load(pipeline.read_text())["stages"]["report"]["cmd"]
    args = shlex.split(command)[3:]
    return {args[i].lstrip("-"): Path(args[i + 1]) for i in range(0, len(args), 2)}


def relog(client: MlflowClient, params: Params, paths: dict[str, Path]) -> str:
    """Log the outputs that exist to one comparison run; returns its id."""
    present = {name: path for name, path in paths.items() if path.is_file()}
    histories = [
        read_history(present[f"phase{n}-history"]).assign(phase=n)
        for n in (1, 2)
        if f"phase{n}-history" in present
    ]
    if not histories:
        raise PipelineError(
            f"nothing to log: {paths['phase1-history']} not found; run `dvc repro` or `dvc pull`"
        )
    summaries = {
        n: read_summary(present[f"phase{n}-summary"])
        for n in (1, 2)
        if f"phase{n}-summary" in present
    }
    history = with_learning_rates(pd.concat(histories, ignore_index=True), summaries)
    metrics = read_metrics(present["metrics"]) if "metrics" in present else {}

    # The outputs' content names the run, so a second relog of them finds the first one.
    key = hashlib.md5(
        "".join(content_hash(present[name]) for name in sorted(present)).encode()
    ).hexdigest()
    tags = context_tags() | {TAG_EXECUTION: f"relog-{key}"}
    experiment_id = experiment_id_for(client, params.mlflow.experiment)
    close_orphaned_runs(client, experiment_id)  # the runs the server lost track of
    run_id = comparison_run(client, experiment_id, params, tags, name=f"relog-{key[:8]}")
    fill_missing_steps(client, run_id, comparison_series(history, kept_epochs(summaries), metrics))
    for path in present.values():
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    uri = tracking_uri()
    check_server(uri)
    with open_store(uri) as client:
        run_id = relog(client, load_params(), report_paths())
    print(f"logged the pipeline's outputs to run {run_id} at {uri}")


if __name__ == "__main__":
    run_stage(NAME, main)
