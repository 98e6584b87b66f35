"""A Keras callback that logs each epoch to MLflow as soon as it ends.

The pattern of MLflow's and dvclive's own Keras callbacks: the callback is handed the stage's
tracker and the training core knows nothing of MLflow.
"""

from __future__ import annotations

import keras

from src.finetune.tracking import StageTracker


class MlflowEpochLogger(keras.callbacks.Callback):
    """Each epoch's metrics and learning rate, with step = the 1-based global epoch, and
    the phase it belongs to (``phase``: 1 or 2), to the stage run and the comparison run."""

    def __init__(self, tracker: StageTracker, phase: int) -> None:
        super().__init__()
        self.tracker = tracker
        self.phase = phase

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        self.tracker.log_epoch(epoch + 1, metrics | {"phase": float(self.phase)})
