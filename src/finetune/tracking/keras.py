"""A Keras callback that hands each epoch to the stage's tracker as soon as it ends.

The pattern of MLflow's and dvclive's own Keras callbacks: the training core knows nothing of
tracking; the stage hands it this callback.
"""

from __future__ import annotations

import keras

from src.finetune.tracking.base import Tracker


class EpochLogger(keras.callbacks.Callback):
    """Each epoch's metrics and learning rate, with the 1-based global epoch, and the phase it
    belongs to (``phase``: 1 or 2, a number, as trackers keep metrics)."""

    def __init__(self, tracker: Tracker, phase: int) -> None:
        super().__init__()
        self.tracker = tracker
        self.phase = phase

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        self.tracker.log_epoch(epoch + 1, metrics | {"phase": float(self.phase)})
