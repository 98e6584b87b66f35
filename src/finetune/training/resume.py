"""Resuming a training stage after a kill, from a backup written at the end of every epoch.

It works like ``keras.callbacks.BackupAndRestore`` (model and optimizer weights, the epoch
reached), with what a phase of several unfreezing steps and early stopping needs:

- the epochs' history rows are backed up with the weights, so the history a resumed stage
  writes has every epoch exactly once;
- the optimizer state holds each group's learning-rate schedule step; the early-stopping
  state (patience used, best val_loss, best epoch and its weights) is kept beside it; the
  unfreezing step and the augmentation follow from the epoch, so they resume too;
- ``state.json`` is the commit point: an epoch's files are written under their own names
  first and ``state.json`` is renamed into place after, so a kill during a backup leaves
  the previous backup whole;
- a backup carries a fingerprint of the stage's params, inputs and code, and of the versions
  of the libraries that train (Keras, TensorFlow, NumPy); one made for others, or one that
  cannot be read, is discarded, never resumed from (the rest of a phase must not train with
  an older optimizer while dvc.lock credits new code).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from src.finetune.errors import PipelineError
from src.finetune.files import (
    LARGE_MEMBER,
    SMALL_MEMBER,
    atomic_path,
    bounded_zip,
    check_file_size,
    content_hash,
    write_json,
)

STATE_FILE = "state.json"
TRAINING_LIBRARIES = ("keras", "tensorflow", "numpy")
log = logging.getLogger(__name__)


def fingerprint(
    params: Mapping[str, Any], inputs: Iterable[Path], code: Iterable[Path] = ()
) -> str:
    """What a backup is only valid for: the stage's params, the content of its inputs and of
    the source files it runs, the libraries it trains with."""
    payload = {
        "params": dict(params),
        "inputs": {str(p): content_hash(p) for p in inputs},
        "code": {str(p): content_hash(p) for p in sorted(code)},
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries whose upgrade may change a backup's meaning
    (the optimizer's variables, the saved weights' layout)."""
    versions = {}
    for name in TRAINING_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclass
class Resumed:
    """The epochs a killed attempt completed: their count and their history rows."""

    epoch: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


class Stateful(Protocol):
    """A callback whose state must survive a kill, such as early stopping."""

    best_weights: list[np.ndarray] | None

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any], best_weights: list | None) -> None: ...


class EpochBackup(keras.callbacks.Callback):
    """Backs up the training state after every epoch; ``restore`` picks it up again."""

    def __init__(self, directory: Path, fingerprint: str, stage: str) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.stage = stage
        self.state = Resumed()
        self.stateful: Stateful | None = None
        self._saved: dict[str, Any] = {}

    @staticmethod
    def disabled() -> EpochBackup:
        """A backup that keeps nothing: training without resume."""
        return _NoBackup(Path(), "", "")

    def follow(self, stateful: Stateful | None) -> None:
        """Also back up (and restore) the state of ``stateful``."""
        self.stateful = stateful

    def completed(self) -> Resumed:
        """The epochs the last attempt backed up, if its backup is valid for this run."""
        state_path = self.directory / STATE_FILE
        if not state_path.is_file():
            self.discard()  # files without a committed state are an unfinished first backup
            return Resumed()
        try:
            if state_path.stat().st_size > SMALL_MEMBER:  # a few KB when written here
                raise ValueError(f"{STATE_FILE} is larger than any state this callback writes")
            saved = json.loads(state_path.read_text())
            epoch, rows, weights = int(saved["epoch"]), list(saved["rows"]), saved["weights"]
            readable = (self.directory / weights).is_file()
        except (OSError, ValueError, KeyError, TypeError):
            readable = False
        if not readable:
            log.info("discarding the backup in %s: it cannot be read", self.directory)
            self.discard()
            return Resumed()
        if saved.get("fingerprint") != self.fingerprint:
            log.info(
                "discarding the backup in %s: it was made with other params, inputs, code or "
                "libraries",
                self.directory,
            )
            self.discard()
            return Resumed()
        self._saved = saved
        self.state = Resumed(epoch, rows)
        return self.state

    def restore(self, model: keras.Model) -> None:
        """Load the backed-up weights and optimizer state into ``model`` (compiled)."""
        saved = self._saved
        fix = f"it was discarded: run the stage again to train {self.stage} from its start"
        try:
            model.optimizer.build(model.trainable_variables)
            check_file_size(self.directory / saved["weights"], LARGE_MEMBER, fix)
            model.load_weights(self.directory / saved["weights"])
            if self.stateful is not None and saved.get("stateful") is not None:
                best = saved.get("best_weights")
                arrays = _load_arrays(self.directory / best, fix) if best else None
                self.stateful.load_state(saved["stateful"], arrays)
        except PipelineError:  # a file too large to read: it names itself
            self.discard()
            raise
        except Exception as error:  # h5py, Keras and NumPy raise many types for a bad file
            self.discard()
            raise PipelineError(
                f"the backup in {self.directory} cannot be restored ({type(error).__name__}); "
                f"it was discarded: run the stage again to train {self.stage} from its start"
            ) from None
        log.info(
            "resuming %s at epoch %d: epochs %d-%d restored from %s",
            self.stage,
            self.state.epoch + 1,
            self.state.rows[0]["epoch"],
            self.state.epoch,
            self.directory,
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        row = {"epoch": done, **{k: float(v) for k, v in (logs or {}).items()}}
        self.state = Resumed(done, [*self.state.rows, row])
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{done}.weights.h5"
        with atomic_path(self.directory / weights) as partial:
            self.model.save_weights(partial)
        state: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "epoch": done,
            "weights": weights,
            "rows": self.state.rows,
        }
        if self.stateful is not None:
            state["stateful"] = self.stateful.state()
            state["best_weights"] = self._best_weights_file(self.stateful, done)
        write_json(self.directory / STATE_FILE, state)
        self._saved = state
        keep = {weights, state.get("best_weights")}
        for old in self.directory.glob("*"):
            if old.name not in keep and old.name != STATE_FILE:
                old.unlink()

    def _best_weights_file(self, stateful: Stateful, done: int) -> str | None:
        """The file of the best weights so far, written in the epoch that made them best."""
        if stateful.best_weights is None:
            return None
        best = stateful.state()["best_epoch"] + 1
        name = f"best-{best}.npz"
        if best == done:
            with atomic_path(self.directory / name) as partial:
                np.savez(partial, *stateful.best_weights)
        return name

    def discard(self) -> None:
        """Remove the backup: the stage's outputs are written, or the backup is stale."""
        shutil.rmtree(self.directory, ignore_errors=True)


class _NoBackup(EpochBackup):
    def completed(self) -> Resumed:
        return Resumed()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def discard(self) -> None:
        pass


def _load_arrays(path: Path, fix: str) -> list[np.ndarray]:
    """The best weights of an ``.npz`` (a zip of ``.npy`` members), its members' sizes
    checked before NumPy reads any."""
    with bounded_zip(path, fix, default=LARGE_MEMBER):
        pass
    with np.load(path, allow_pickle=False) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
