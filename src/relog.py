"""Log a pipeline's outputs to the tracker after the fact, e.g. once a dead tracking server
is back.

    python -m src.relog

A stage whose tracking server went away finishes its training and writes its outputs
without it. This reads what the pipeline wrote, at the paths the report stage declares (both
histories and summaries, the metrics, the figure, the report), and logs it as one comparison
run: the params, every epoch's metrics, the headline numbers and the files. Running it again
for the same outputs fills in what is missing and adds nothing twice.

The params are those that made the outputs, as dvc.lock records them for the stages that
wrote them, not whatever params.yaml says now (an edit or a sweep since may have changed it);
params.yaml gives only where to log (``tracker``, ``mlflow``). Outputs that dvc.lock does not
record, or that changed since it was written, are refused: their params are unknown.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from src.finetune.entrypoint import run_process
from src.finetune.environment import rerun
from src.finetune.errors import PipelineError, first_line
from src.finetune.evaluation.metrics import read_metrics
from src.finetune.files import content_hash
from src.finetune.params import (
    Params,
    Phase,
    apply_overrides,
    check_params,
    flatten,
    load_params,
    read_yaml,
)
from src.finetune.tracking import Status, backend
from src.finetune.training.history import (
    kept_epochs,
    read_history,
    read_summary,
    with_learning_rates,
)
from src.stages.report import STAGE as REPORT

NAME = "relog"
LOCK = Path("dvc.lock")
PARAMS = Path("params.yaml")


def report_paths() -> dict[str, Path]:
    """Every file the report stage reads or writes: every output the pipeline makes."""
    return {name: Path(file.path) for name, file in REPORT.files.items()}


def locked_params(
    outputs: Iterable[Path], lock: Path = LOCK, params_file: Path = PARAMS
) -> tuple[Params, tuple[str, ...]]:
    """The params that made ``outputs``, as dvc.lock records them for the stages that wrote
    them (checked with the stages' model), and their keys; or one line saying why they are
    unknown: no dvc.lock, an output it does not record, or one changed since it was written."""
    again = f"run {rerun()} first"
    if not lock.is_file():
        raise PipelineError(
            f"{lock} not found, so the params that made the outputs are unknown; {again} "
            "(from the repository root)"
        )
    stages = read_yaml(lock).get("stages")
    if not isinstance(stages, dict):
        raise PipelineError(f"{lock} records no stage; {again}")
    writers = {
        Path(out["path"]).as_posix(): name
        for name, stage in stages.items()
        if isinstance(stage, dict)
        for out in stage.get("outs") or []
        if isinstance(out, dict) and "path" in out
    }
    made_by: dict[str, str] = {}
    for output in outputs:
        if output.as_posix() not in writers:
            raise PipelineError(f"{output}: no stage of {lock} wrote it; {again}")
        made_by[writers[output.as_posix()]] = output.as_posix()
    if changed := changed_output(sorted(made_by)):
        stage, output = changed
        raise PipelineError(f"{output} changed since {lock} recorded {stage}'s run; {again}")
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for stage in sorted(made_by):
        recorded = (stages[stage].get("params") or {}).get(str(params_file)) or {}
        for key, value in flatten(recorded).items():
            if key in values and values[key] != value:
                raise PipelineError(
                    f"{lock}: {key} is {values[key]!r} for {source[key]} but {value!r} for "
                    f"{stage}, so no one set of params made the outputs; {again}"
                )
            values[key], source[key] = value, stage
    current = read_yaml(params_file)
    check_params(current, where=params_file)  # where to log comes from it
    return check_params(apply_overrides(current, values), where=lock), tuple(sorted(values))


def changed_output(stages: list[str]) -> tuple[str, str] | None:
    """A stage of ``stages`` and an output of it whose content is no longer what dvc.lock
    records (`dvc status`: "changed outs", modified), if any."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(".") as repo:
            status = repo.status(targets=stages)
    except DvcException as error:
        raise PipelineError(f"dvc status: {first_line(error)}") from None
    for stage, entries in status.items():
        for entry in entries:
            outs = entry.get("changed outs", {}) if isinstance(entry, dict) else {}
            for path, state in outs.items():
                if state == "modified":
                    return stage.rpartition(":")[2], path
    return None


def relog(paths: dict[str, Path], lock: Path = LOCK, params_file: Path = PARAMS) -> str:
    """Log the outputs that exist to one comparison run, with the params dvc.lock says made
    them; returns its id."""
    present = {name: path for name, path in paths.items() if path.is_file()}
    phases = [phase for phase in Phase if f"{phase}-history" in present]
    if not phases:
        raise PipelineError(
            f"nothing to log: {paths['phase1-history']} not found; run `dvc repro` or `dvc pull`"
        )
    params, logged = locked_params(present.values(), lock, params_file)
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
    tracker = backend(params).execution(params, f"relog-{key}", f"relog-{key[:8]}", logged)
    tracker.log_execution(history, kept_epochs(summaries), metrics)
    tracker.log_artifacts(list(present.values()))
    tracker.close(Status.FINISHED)
    return tracker.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    run_id = relog(report_paths())
    where = backend(load_params(PARAMS)).location()
    print(f"logged the pipeline's outputs to run {run_id} at {where}")


if __name__ == "__main__":
    run_process(NAME, main)
