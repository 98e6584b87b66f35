"""A tuning study's trials, as each worker runs them: every trial a real pipeline execution
in a workspace of its own, saved as the DVC experiment ``<study>-<number>``, its value read
back from the reporting phase; the progress lines, the study's files and its tracker run.

``python -m src.tune`` (the tool) parses the command line and calls this; with ``--jobs`` it
starts more workers of itself (``run_workers``), as a second machine would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.trial import FrozenTrial, TrialState

from src.finetune.environment import (
    PRUNED_AT,
    STOPPED_BECAUSE,
    StudyTrial,
    die_with_parent,
    share_of_cores,
)
from src.finetune.errors import PipelineError, first_line
from src.finetune.experiments import git
from src.finetune.params import Params
from src.finetune.tracking import backend
from src.finetune.tracking.studies import StudyTracker
from src.finetune.training.history import read_history, read_summary
from src.finetune.tuning.results import EXPERIMENT, StudyResults, study_results, write_results
from src.finetune.tuning.space import SearchSpace
from src.finetune.tuning.study import (
    HEARTBEAT_S,
    best_trial,
    default_storage,
    progress,
    safe_url,
    worker_seed,
)
from src.finetune.workspaces import (
    Workspace,
    bring_inputs,
    claim_workspace,
    run_experiment,
    study_folder,
)

REPORTS = Path("reports/tuning")
# The files of the reporting phase a trial's value is read from (phase2_finetune's outputs;
# tests/tools/test_tune.py checks them against its declaration).
LAST_PHASE_HISTORY = Path("reports/phase2_history.csv")
LAST_PHASE_SUMMARY = Path("reports/phase2_summary.json")
FAILURES_IN_A_ROW = 3
log = logging.getLogger(__name__)


class TrialFailed(Exception):
    """A trial's pipeline failed; the study records it and goes on."""


@dataclass
class Study:
    """One worker's view of the study it works on."""

    study: optuna.Study
    space: SearchSpace
    trials: int
    storage: str
    tracker: StudyTracker
    root: Path
    dvc: str
    params: Params
    inputs: list[str] | None = None  # what the last trial trained on (``bring_inputs``)


def run_workers(space: Path, jobs: int, trials: int, study: str, storage: str) -> None:
    """``jobs`` workers, each a process of the tool (``python -m src.tune --worker``) running
    trials one at a time in its own workspace, as on many machines; stopped together. Each
    trial's TensorFlow gets its worker's share of the cores."""
    command = [sys.executable, "-m", "src.tune", "--space", str(space), "--trials"]
    command += [str(trials), "--study", study, "--storage", storage, "--worker"]
    env = os.environ | share_of_cores(jobs)
    workers = [subprocess.Popen(command, env=env, preexec_fn=die_with_parent) for _ in range(jobs)]
    try:
        codes = [worker.wait() for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=60)
    if any(codes):
        raise PipelineError(f"{sum(map(bool, codes))} of {len(codes)} workers failed; see above")


def run_trials(work: Study, tree: dict, params: Params, trials: int | None = None) -> None:
    """Run trials (``trials`` of them, or until the study has its count of completed and
    pruned ones)."""
    if progress(work.study, work.trials).left == 0:
        return
    folder = study_folder(work.root, work.study.study_name)
    workspace = claim_workspace(folder, work.root, tree, work.dvc)
    shared = work.storage != default_storage(work.root)
    seed = worker_seed(params.seed, workspace.index, shared, len(work.study.trials))
    work.study.sampler = optuna.samplers.TPESampler(seed=seed)
    reporter = Reporter(work, time.monotonic())
    ran = 0
    try:
        while trials is None or ran < trials:
            fail_stale_trials(work)
            now = progress(work.study, work.trials)
            if now.left == 0 or reporter.failures >= FAILURES_IN_A_ROW:
                break
            if now.running >= now.left:  # the study ends with the trials under way
                time.sleep(HEARTBEAT_S)  # unless one of them dies: then its place is free
                continue
            work.study.optimize(
                lambda trial: objective(trial, work, workspace),
                n_trials=1,
                catch=(TrialFailed,),
                callbacks=[reporter],
            )
            ran += 1
    finally:
        workspace.lock.release()
    if reporter.failures >= FAILURES_IN_A_ROW:
        raise PipelineError(
            f"{FAILURES_IN_A_ROW} trials in a row failed; the log of each says why "
            f"({study_folder(work.root, work.study.study_name)}/trial-<number>.log)"
        )


def fail_stale_trials(work: Study) -> None:
    """Mark failed the trials whose worker stopped beating (killed, its machine gone), and
    their MLflow runs."""
    running = {trial.number for trial in work.study.get_trials(states=(TrialState.RUNNING,))}
    if not running:
        return
    optuna.storages.fail_stale_trials(work.study)
    failed = work.study.get_trials(states=(TrialState.FAIL,))
    for trial in (trial for trial in failed if trial.number in running):
        work.tracker.trial_finished(trial.number, "fail")
        print(f"trial {trial.number} failed: its worker stopped (killed?); its place is free")


def objective(trial: optuna.Trial, work: Study, workspace: Workspace) -> float:
    """One trial: its params drawn, its pipeline run and saved as a DVC experiment, its value
    read back from the reporting phase's history at the kept epoch."""
    overrides = work.space.suggest(trial)
    name = f"{work.study.study_name}-{trial.number}"
    reference = StudyTrial(work.storage, work.study.study_name, trial.number, work.tracker.run_id)
    env = os.environ | reference.environ() | {"DVC_EXP_NAME": name}
    env |= backend(work.params).workspace_env(work.root)
    log_path = study_folder(work.root, work.study.study_name) / f"trial-{trial.number}.log"
    trial.set_user_attr("log", str(log_path))
    inputs = bring_inputs(workspace, work.params)  # the user's data as it is now
    trial.set_user_attr("inputs", inputs)
    if inputs != work.inputs:
        changed = " (changed since the last trial)" if work.inputs is not None else ""
        print(f"trial {trial.number} trains on {', '.join(inputs)}{changed}", flush=True)
        work.inputs = inputs
    try:
        run_experiment(workspace, overrides, name, work.dvc, env, log_path,
                       header=f"inputs: {', '.join(inputs) or 'none outside git'}")  # fmt: skip
    except PipelineError as error:
        stored = work.study._storage.get_trial(trial._trial_id)  # what the stage recorded
        if PRUNED_AT in stored.user_attrs:
            raise optuna.TrialPruned() from None
        raise TrialFailed(stage_error(log_path) or str(error)) from None
    trial.set_user_attr(EXPERIMENT, name)
    return trial_value(workspace.path, work.space.metric)


def stage_error(log_path: Path) -> str | None:
    """The one-line error the failing stage wrote to the trial's log (``error: <stage>:
    ...``), the reason a failed trial's line gives."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line for line in reversed(lines) if line.startswith("error: ")), None)


def trial_value(workspace: Path, metric: str) -> float:
    """The metric of the reporting phase at the epoch whose weights it kept."""
    history = read_history(workspace / LAST_PHASE_HISTORY)
    kept = read_summary(workspace / LAST_PHASE_SUMMARY).kept_epoch
    return float(history.loc[history["epoch"] == kept, metric].iloc[0])


class Reporter:
    """After each trial: its line, its MLflow runs tagged and closed, the study's files."""

    def __init__(self, work: Study, started: float) -> None:
        self.work = work
        self.started = started
        self.failures = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        state = trial.state.name.lower()
        self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        if self.failures >= FAILURES_IN_A_ROW:
            study.stop()
        self.work.tracker.trial_finished(trial.number, state)
        write_study_files(self.work)
        print(self.line(study, trial), flush=True)

    def line(self, study: optuna.Study, trial: FrozenTrial) -> str:
        metric = self.work.space.metric
        if trial.state == TrialState.COMPLETE:
            what = f"complete: {metric} {trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            epochs = len(trial.intermediate_values)
            why = trial.user_attrs.get(STOPPED_BECAUSE)
            what = f"pruned after {epochs} epochs" + (f": {why}" if why else "")
        else:
            reason = first_line(trial.system_attrs.get("fail_reason", "failed"), 120)
            what = f"failed ({reason})"
        best = best_trial(study)
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
        left = progress(study, self.work.trials).left
        elapsed = time.monotonic() - self.started
        minutes, seconds = divmod(int(elapsed), 60)
        return f"trial {trial.number} {what}; {best_text}; {left} left; {minutes}m{seconds:02d}s"


def write_study_files(work: Study) -> tuple[StudyResults, list[Path]]:
    """The study's files rebuilt from its storage, one worker at a time; the results and the
    files written."""
    results = study_results(work.study)
    with FileLock(study_folder(work.root, work.study.study_name) / "results.lock"):
        return results, write_results(work.study, results, work.root / REPORTS)


def finish_study(work: Study) -> None:
    """The study's files and MLflow run, and what to do next."""
    results, files = write_study_files(work)
    counts = {state: results.count(state) for state in ("complete", "pruned", "fail")}
    best = results.best
    numbers = {f"trials_{state}": float(count) for state, count in counts.items()}
    numbers["epochs"] = float(results.epochs)
    if best is not None:
        numbers |= {f"best_{results.metric}": best.value, "best_trial": float(best.number)}
    settings = {
        "metric": results.metric,
        "direction": results.direction,
        "pruner": work.space.pruner,
        "trials": work.trials,
    } | {f"space.{key}": value.model_dump_json() for key, value in work.space.space.items()}
    work.tracker.study_finished(settings, best.params if best else {}, numbers, files)
    print(closing(results, counts, files, work), flush=True)


def closing(results: StudyResults, counts: dict[str, int], files: list[Path], work: Study) -> str:
    done = ", ".join(f"{count} {state}" for state, count in counts.items())
    lines = [f"\nstudy {results.study}: {done}; {results.epochs} epochs trained in all"]
    if results.best:
        best = results.best
        chosen = " ".join(f"{key}={value}" for key, value in best.params.items())
        lines.append(
            f"  best     trial {best.number}: {results.metric} {best.value:.4f} with {chosen}"
        )
        lines.append(f"  replay   python -m src.recipes {REPORTS}/{results.study}-best.yaml --run")
        lines.append(f"  apply    dvc exp apply {best.experiment}")
    lines.append("  files    " + " ".join(str(path.relative_to(work.root)) for path in files))
    dashboard = f"optuna-dashboard {safe_url(work.storage)}"
    lines.append(f"  compare  dvc exp show --only-changed; make ui; {dashboard}")
    return "\n".join(lines)


def run_study(work: Study, tree: dict, jobs: int, space: Path, worker: bool = False) -> None:
    """The whole study from this process: its opening line, the trials (with ``jobs``
    workers, the first trial alone: the stages every trial shares go to DVC's cache once),
    then its files, tracker run and closing lines; a ``worker`` runs trials only."""
    fail_stale_trials(work)  # a dead worker's trials, before counting
    if not worker:
        warn_uncommitted(work.root)
        print(opening(work, jobs), flush=True)
    if jobs > 1:
        if progress(work.study, work.trials).done == 0:
            run_trials(work, tree, work.params, trials=1)
        run_workers(space, jobs, work.trials, work.study.study_name, work.storage)
    else:
        run_trials(work, tree, work.params)
    if not worker:
        finish_study(work)


def opening(work: Study, jobs: int) -> str:
    now = progress(work.study, work.trials)
    where = f"{now.done} done" + (f", {now.failed} failed" if now.failed else "")
    return (
        f"study {work.study.study_name}: {work.trials} trials ({where}), {jobs} at a time, "
        f"{work.space.direction} {work.space.metric}, pruner {work.space.pruner}; "
        f"trials are the DVC experiments {work.study.study_name}-<number>"
    )


def warn_uncommitted(root: Path) -> None:
    """Trials run the committed code: say which changes they will not see."""
    changed = git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
    files = [line[3:] for line in changed if line[3:] != "params.yaml"]
    if files:
        log.warning(
            "trials run the committed code and your params.yaml; not your changes to %s "
            "(commit them to tune with them)",
            ", ".join(files[:5]) + (" ..." if len(files) > 5 else ""),
        )
