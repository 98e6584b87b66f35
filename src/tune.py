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
--run``), Optuna's figures, and one tracker run for the study with each trial's run under
it. The trials themselves: ``finetune.tuning.trials``.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import optuna

from src.finetune.entrypoint import run_process
from src.finetune.environment import repository_root
from src.finetune.errors import PipelineError
from src.finetune.params import check_params, read_yaml
from src.finetune.tracking import backend
from src.finetune.tracking.studies import SafeStudyTracker
from src.finetune.tuning.space import load_space
from src.finetune.tuning.study import default_storage, open_study
from src.finetune.tuning.trials import Study, run_study

NAME = "tune"
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$")


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is one line of ours
    root = repository_root()
    tree = read_yaml(root / "params.yaml", keep_comments=True)  # each trial's, documented
    params = check_params(tree, Path("params.yaml"))
    space = load_space(args.space, tree)
    name = args.study or args.space.stem
    if not STUDY_NAME.match(name):
        given = f"--study {name!r}" if args.study else (
            f"the study is named after {args.space.name} ({name!r}); give --study NAME, or"
        )  # fmt: skip
        raise PipelineError(
            f"{given}: use letters, digits, '.', '_' and '-' (up to 60), starting with a "
            "letter or digit: it names the DVC experiments"
        )
    dvc = shutil.which("dvc")
    if dvc is None:
        raise PipelineError("dvc not found; run `make install`, then `make tune`")
    storage = args.storage or default_storage(root)
    study = open_study(space, name, storage)
    tracker = SafeStudyTracker(backend(params).study(params, name))
    work = Study(study, space, args.trials or space.trials, storage, tracker, root, dvc, params)
    run_study(work, tree, args.jobs, args.space, worker=args.worker)


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


if __name__ == "__main__":
    run_process(NAME, main)
