"""The Optuna study behind ``python -m src.tune``: created or joined by name in its storage,
bound to one search space, seeded, and watched by a heartbeat.

Storage is Optuna's RDB storage: a SQLite file in the repository for one box, a PostgreSQL URL
for many machines joining one study. Every running trial beats a heartbeat; a trial whose
worker died (killed, its machine gone) misses it and is marked failed by the next worker that
starts a trial, or by the next run of the command: never left running, never counted as done.
"""

from __future__ import annotations

import logging
import socket
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from src.finetune.errors import PipelineError, first_line
from src.finetune.tuning.pruners import make_pruner
from src.finetune.tuning.space import SearchSpace

# A worker beats every HEARTBEAT_S; a trial silent for GRACE_S is its worker's death.
HEARTBEAT_S = 10
GRACE_S = 30
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
log = logging.getLogger(__name__)


def default_storage(root: Path) -> str:
    """The study storage of one box: a SQLite file at the repository root."""
    return f"sqlite:///{root / 'optuna.db'}"


def storage_for(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with the heartbeat on, or one line saying why it cannot open."""
    # The heartbeat has been "experimental" since Optuna 2.9; it is what marks dead trials.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            engine_kwargs={"pool_pre_ping": True},
        )
    except (SQLAlchemyError, ValueError, ImportError, optuna.exceptions.StorageInternalError) as e:
        raise PipelineError(
            f"cannot open the study storage {safe_url(url)} ({first_line(e, 120)}); check the URL, "
            "and that the database server is up"
        ) from None


def open_study(space: SearchSpace, name: str, storage: str) -> optuna.Study:
    """The study ``name``: created with the space, or joined if it exists with the same one.

    Each worker gives it a TPE sampler of its own (see ``worker_seed``). The space, metric and
    pruner are stored in the study, so a second machine, or a second run, cannot join it with
    another space, and the stages of a trial prune as the study does.
    """
    study = optuna.create_study(
        study_name=name,
        storage=storage_for(storage),
        pruner=make_pruner(space.pruner, space.trials, space.prune_after),
        direction=space.direction,
        load_if_exists=True,
    )
    bound = study.user_attrs.get("space")
    if bound is None:  # the stages of each trial read these back (``tuning.pruning``)
        study.set_user_attr("space", space.fingerprint())
        study.set_user_attr("metric", space.metric)
        study.set_user_attr("pruner", [space.pruner, space.trials, space.prune_after])
    elif bound != space.fingerprint():
        raise PipelineError(
            f"study {name!r} already exists in {safe_url(storage)} with another search space or "
            "metric; name a new study (--study) or put the space back as it was"
        )
    return study


def worker_seed(seed: int, worker: int, shared: bool, trials_so_far: int) -> int:
    """The sampler's seed for one worker: params.yaml's ``seed`` for the first worker of a
    box on a new study, so a study run again from scratch draws the same trials; offset by
    the trials the study already has (a continued study draws new ones), by the worker, and
    by the host's name on a storage shared between machines, so that parallel workers do not
    draw the same params."""
    if not (trials_so_far or worker or shared):
        return seed
    host = socket.gethostname() if shared else ""
    return zlib.crc32(f"{seed}-{trials_so_far}-{worker}-{host}".encode())


@dataclass(frozen=True)
class Progress:
    """Where a study stands: trials done (completed or pruned), failed, running, and left."""

    done: int
    failed: int
    running: int
    left: int


def progress(study: optuna.Study, wanted: int) -> Progress:
    trials = study.get_trials(deepcopy=False)
    count = {state: sum(trial.state == state for trial in trials) for state in TrialState}
    done = sum(count[state] for state in DONE)
    return Progress(done, count[TrialState.FAIL], count[TrialState.RUNNING], max(0, wanted - done))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial, or None before one completes."""
    try:
        return study.best_trial
    except ValueError:
        return None


def safe_url(url: str) -> str:
    """A storage URL without its password, for messages."""
    head, at, tail = url.partition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"
