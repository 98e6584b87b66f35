"""Tune params with an Optuna study that prunes; every trial is a DVC experiment.

    make tune                                    # python -m src.tune: tune.yaml, in optuna.db
    python -m src.tune --jobs 2                  # two trials at a time on this box
    python -m src.tune --storage postgresql://user:password@host/db   # one study, many boxes

``tune.yaml`` says what to optimise, how many trials, how to prune and the space of params.
Each trial runs the pipeline (``dvc repro``) in a workspace of its own with the params the
study's TPE sampler (seeded from ``seed``) draws, and is saved as the DVC experiment
``<study>-<number>``: ``dvc exp show`` lists it, ``dvc exp apply`` brings it back. The
fine-tuning stage reports each epoch's validation metric to the study, whose pruner may stop
it there. Running the same command again continues the study; a trial whose worker died is
marked failed and run again as a new trial. In the end: ``reports/tuning/<study>.json``,
``<study>-best.yaml`` (replay it: ``python -m src.recipes reports/tuning/<study>-best.yaml
--run``), Optuna's figures, and one MLflow run for the study with each trial's run under it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.trial import FrozenTrial, TrialState

from src.finetune.entrypoint import run_stage
from src.finetune.environment import PRUNED_AT, StudyTrial, die_with_parent, repository_root
from src.finetune.errors import PipelineError, first_line
from src.finetune.experiments import git
from src.finetune.params import Params, check_params, read_yaml
from src.finetune.tracking.studies import (
    RecordingStudyTracker,
    SafeStudyTracker,
    StudyTracker,
)
from src.finetune.training.history import read_history, read_summary
from src.finetune.tuning.results import (
    EXPERIMENT,
    StudyResults,
    study_results,
    write_results,
)
from src.finetune.tuning.space import SearchSpace, load_space
from src.finetune.tuning.study import (
    HEARTBEAT_S,
    best_trial,
    default_storage,
    open_study,
    progress,
    safe_url,
    worker_seed,
)
from src.finetune.workspaces import (
    Workspace,
    claim_workspace,
    link_inputs,
    run_experiment,
    study_folder,
    tracking_env,
)

NAME = "tune"
REPORTS = Path("reports/tuning")
# The files of the reporting phase a trial's value is read from (phase2_finetune's outputs;
# tests/tools/test_tune.py checks them against its declaration).
LAST_PHASE_HISTORY = Path("reports/phase2_history.csv")
LAST_PHASE_SUMMARY = Path("reports/phase2_summary.json")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$")
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


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is one line of ours
    root = repository_root()
    tree = read_yaml(root / "params.yaml")
    params = check_params(tree, Path("params.yaml"))
    space = load_space(args.space, tree)
    name = args.study or args.space.stem
    if not STUDY_NAME.match(name):
        raise PipelineError(
            f"--study {name!r}: use letters, digits, '.', '_' and '-' (up to 60), starting "
            "with a letter or digit: it names the DVC experiments"
        )
    dvc = shutil.which("dvc")
    if dvc is None:
        raise PipelineError("dvc not found; run `make install`, then `make tune`")
    storage = args.storage or default_storage(root)
    study = open_study(space, name, storage)
    tracker = _study_tracker(params, study)
    work = Study(study, space, args.trials or space.trials, storage, tracker, root, dvc)
    fail_stale_trials(work)  # a dead worker's trials, before counting
    if not args.worker:
        _warn_uncommitted(root)
        print(_opening(work, args.jobs), flush=True)
    if args.jobs > 1:
        if progress(study, work.trials).done == 0:
            # The first trial alone: the stages every trial shares go to DVC's cache once.
            _work(work, tree, params, trials=1)
        _run_workers(args, work.trials, name, storage)
    else:
        _work(work, tree, params)
    if not args.worker:
        _finish(work)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, default=Path("tune.yaml"), help="search space file")
    parser.add_argument("--trials", type=int, help="trials in all (default: tune.yaml's)")
    parser.add_argument("--jobs", type=int, default=1, help="trials at a time on this box")
    parser.add_argument("--study", help="study name (default: the space file's name)")
    parser.add_argument(
        "--storage", help="Optuna storage URL (default: sqlite:///optuna.db in the repository)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error("--trials: give 1 or more")
    if not 1 <= args.jobs <= 64:
        parser.error("--jobs: give 1 to 64")
    return args


def _study_tracker(params: Params, study: optuna.Study) -> StudyTracker:
    """The study's MLflow run, or a recorder with ``tracker: none``."""
    if params.tracker != "mlflow":
        return RecordingStudyTracker()
    from src.finetune.tracking.mlflow.studies import open_study_tracker  # loads in seconds

    return SafeStudyTracker(open_study_tracker(params.mlflow_experiment, study.study_name))


def _opening(work: Study, jobs: int) -> str:
    now = progress(work.study, work.trials)
    where = f"{now.done} done" + (f", {now.failed} failed" if now.failed else "")
    return (
        f"study {work.study.study_name}: {work.trials} trials ({where}), {jobs} at a time, "
        f"{work.space.direction} {work.space.metric}, pruner {work.space.pruner}; "
        f"trials are the DVC experiments {work.study.study_name}-<number>"
    )


def _warn_uncommitted(root: Path) -> None:
    changed = git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
    files = [line[3:] for line in changed if line[3:] != "params.yaml"]
    if files:
        log.warning(
            "trials run the committed code and your params.yaml; not your changes to %s "
            "(commit them to tune with them)",
            ", ".join(files[:5]) + (" ..." if len(files) > 5 else ""),
        )


def _run_workers(args: argparse.Namespace, trials: int, study: str, storage: str) -> None:
    """``--jobs`` workers, each a process running trials one at a time in its own workspace,
    as on many machines; stopped together."""
    command = [sys.executable, "-m", "src.tune", "--space", str(args.space), "--trials"]
    command += [str(trials), "--study", study, "--storage", storage, "--worker"]
    workers = [subprocess.Popen(command, preexec_fn=die_with_parent) for _ in range(args.jobs)]
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


def _work(work: Study, tree: dict, params: Params, trials: int | None = None) -> None:
    """Run trials (``trials`` of them, or until the study has its count of completed and
    pruned ones)."""
    if progress(work.study, work.trials).left == 0:
        return
    folder = study_folder(work.root, work.study.study_name)
    workspace = claim_workspace(folder, work.root, tree, work.dvc)
    link_inputs(workspace, params)
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
                lambda trial: _objective(trial, work, workspace),
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


def _objective(trial: optuna.Trial, work: Study, workspace: Workspace) -> float:
    """One trial: its params drawn, its pipeline run and saved as a DVC experiment, its value
    read back from the reporting phase's history at the kept epoch."""
    overrides = work.space.suggest(trial)
    name = f"{work.study.study_name}-{trial.number}"
    reference = StudyTrial(work.storage, work.study.study_name, trial.number, work.tracker.run_id)
    env = os.environ | reference.environ() | {"DVC_EXP_NAME": name} | tracking_env(work.root)
    log_path = study_folder(work.root, work.study.study_name) / f"trial-{trial.number}.log"
    trial.set_user_attr("log", str(log_path))
    try:
        run_experiment(workspace, overrides, name, work.dvc, env, log_path)
    except PipelineError as error:
        stored = work.study._storage.get_trial(trial._trial_id)  # what the stage recorded
        if PRUNED_AT in stored.user_attrs:
            raise optuna.TrialPruned() from None
        raise TrialFailed(str(error)) from None
    trial.set_user_attr(EXPERIMENT, name)
    return trial_value(workspace.path, work.space.metric)


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
            what = f"pruned after {len(trial.intermediate_values)} epochs"
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


def _finish(work: Study) -> None:
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
    print(_closing(results, counts, files, work), flush=True)


def _closing(results, counts, files, work: Study) -> str:
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


if __name__ == "__main__":
    run_stage(NAME, main)
