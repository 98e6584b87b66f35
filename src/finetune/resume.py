"""Resuming a training stage after a kill, from a backup written at the end of every epoch.

It works like ``keras.callbacks.BackupAndRestore`` (model and optimizer weights, the epoch
reached), with three differences that a 25-epoch run needs:

- the epochs' history rows are backed up with the weights, so the history a resumed stage
  writes has every epoch exactly once;
- ``state.json`` is the commit point: the weights of an epoch are written under their own
  name first and ``state.json`` is renamed into place after, so a kill during a backup
  leaves the previous backup whole;
- a backup carries a fingerprint of the stage's params and inputs; one made for other
  params or inputs is discarded, never resumed from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from src.finetune.files import atomic_path, content_hash, write_json

STATE_FILE = "state.json"
log = logging.getLogger(__name__)


def fingerprint(params: Mapping[str, Any], inputs: Iterable[Path]) -> str:
    """What a backup is only valid for: the stage's params and the content of its inputs."""
    payload = {"params": dict(params), "inputs": {str(p): content_hash(p) for p in inputs}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Resumed:
    """The epochs a killed attempt completed: their count and their history rows."""

    epoch: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


class EpochBackup(keras.callbacks.Callback):
    """Backs up the training state after every epoch; ``restore`` picks it up again."""

    def __init__(self, directory: Path, fingerprint: str, stage: str) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.stage = stage
        self.state = Resumed()

    def restore(self, model: keras.Model) -> Resumed:
        """Load the last backup into ``model`` (compiled) if there is a valid one."""
        state_path = self.directory / STATE_FILE
        if not state_path.is_file():
            self.discard()  # weights without a committed state are an unfinished first backup
            return self.state
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") != self.fingerprint:
            log.info(
                "discarding the backup in %s: it was made with other params or inputs",
                self.directory,
            )
            self.discard()
            return self.state
        model.optimizer.build(model.trainable_variables)
        model.load_weights(self.directory / state["weights"])
        self.state = Resumed(int(state["epoch"]), list(state["rows"]))
        log.info(
            "resuming %s at epoch %d: epochs %d-%d restored from %s",
            self.stage,
            self.state.epoch + 1,
            self.state.rows[0]["epoch"],
            self.state.epoch,
            self.directory,
        )
        return self.state

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        row = {"epoch": done, **{k: float(v) for k, v in (logs or {}).items()}}
        self.state = Resumed(done, [*self.state.rows, row])
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{done}.weights.h5"
        with atomic_path(self.directory / weights) as partial:
            self.model.save_weights(partial)
        write_json(
            self.directory / STATE_FILE,
            {
                "fingerprint": self.fingerprint,
                "epoch": done,
                "weights": weights,
                "rows": self.state.rows,
            },
        )
        for old in self.directory.glob("epoch-*.weights.h5"):
            if old.name != weights:
                old.unlink()

    def discard(self) -> None:
        """Remove the backup: the stage's outputs are written, or the backup is stale."""
        shutil.rmtree(self.directory, ignore_errors=True)
