"""Glue between the prepared splits, ``model.fit`` and the per-epoch history files."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import pandas as pd
import tensorflow as tf

from src.finetune.caching import cached_outputs, split_frozen
from src.finetune.data import NUM_CLASSES, Split
from src.finetune.errors import PipelineError
from src.finetune.files import write_csv
from src.finetune.history import history_frame
from src.finetune.model import compile_for_training, save_model
from src.finetune.params import Phase1Params, Phase2Params
from src.finetune.resume import EpochBackup, Resumed
from src.finetune.tracking import StageTracker

EpochHook = Callable[[int, dict[str, float]], None]
log = logging.getLogger(__name__)


def as_dataset(split: Split, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches of (float32 pixels 0-255, one-hot labels), converted per batch, never whole."""
    dataset = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (
        dataset.batch(batch_size)
        .map(_to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _to_model_inputs(images: Any, labels: tf.Tensor) -> tuple[Any, tf.Tensor]:
    floats = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), images)
    return floats, tf.one_hot(labels, NUM_CLASSES)


def train(
    model: keras.Model,
    train_split: Split,
    val_split: Split,
    *,
    batch_size: int,
    epochs: int,
    initial_epoch: int,
    seed: int,
    on_epoch_end: EpochHook,
    lr_param: str,
    backup: EpochBackup | None = None,
) -> pd.DataFrame:
    """Fit for ``epochs`` more epochs after ``initial_epoch``; returns the history frame.

    ``on_epoch_end`` receives the 1-based global epoch and the epoch's metrics as soon as
    the epoch ends, so tracking shows training live. With a ``backup``, training resumes
    after the last epoch a killed attempt completed; those epochs are reported again, for
    the new attempt's run.
    """
    backup = backup or _NoBackup()
    resumed = backup.restore(model)
    for row in resumed.rows:
        on_epoch_end(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
    rows = list(resumed.rows)
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: _record(rows, epoch + 1, _floats(logs), on_epoch_end)
    )
    start, end = max(initial_epoch, resumed.epoch), initial_epoch + epochs
    if start < end:  # a killed attempt may have finished training but not saved the model
        model.fit(
            as_dataset(train_split, batch_size, shuffle_seed=seed),
            validation_data=as_dataset(val_split, batch_size),
            initial_epoch=start,
            epochs=end,
            # The backup runs before the recorder: an epoch is reported once it is safe.
            callbacks=[keras.callbacks.TerminateOnNaN(), backup, recorder],
            shuffle=False,  # the dataset shuffles itself, seeded, every epoch
            verbose=1 if sys.stdout.isatty() else 2,
        )
    frame = history_frame(rows)
    try:
        _fail_on_divergence(frame, lr_param)
    except PipelineError:
        backup.discard()  # resuming from diverged weights would only diverge again
        raise
    return frame


class _NoBackup(keras.callbacks.Callback):
    def restore(self, model: keras.Model) -> Resumed:
        return Resumed()

    def discard(self) -> None:
        pass


def _record(rows: list, epoch: int, logs: dict[str, float], on_epoch_end: EpochHook) -> None:
    rows.append({"epoch": epoch, **logs})
    on_epoch_end(epoch, logs)


def _floats(logs: dict | None) -> dict[str, float]:
    return {key: float(value) for key, value in (logs or {}).items()}


def _fail_on_divergence(frame: pd.DataFrame, lr_param: str) -> None:
    bad = frame[~frame["loss"].map(math.isfinite)]
    if len(bad):
        epoch = int(bad["epoch"].iloc[0])
        raise PipelineError(
            f"training diverged: the loss is not finite at epoch {epoch}; lower {lr_param} "
            "and run again"
        )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and use deterministic ops: same params, same run.

    Deterministic ops cost nothing measurable on the CPU (see README: Determinism); on a
    GPU, TensorFlow picks slower deterministic kernels where it must.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_phase(
    model: keras.Model,
    splits: tuple[Split, Split],
    *,
    name: str,
    phase: Phase1Params | Phase2Params,
    cache: bool,
    cache_budget_gb: float,
    jit_compile: bool,
    initial_epoch: int,
    seed: int,
    tracker: StageTracker,
    model_path: Path,
    history_path: Path,
    backup: EpochBackup,
) -> None:
    """Train the phase's trainable layers, then write and record the model and history.

    With ``cache``, the frozen part of the network runs once and only the trainable part
    trains, on its cached outputs, if they fit in ``cache_budget_gb``; otherwise every batch
    streams through the whole model. The backup outlives a kill and is removed only once
    both outputs are written.
    """
    trainable, (train_split, val_split) = model, splits
    if cache:
        trainable, (train_split, val_split) = cached_training(model, splits, cache_budget_gb)
    compile_for_training(trainable, phase.lr, jit_compile)
    history = train(
        trainable,
        train_split,
        val_split,
        batch_size=phase.batch_size,
        epochs=phase.epochs,
        initial_epoch=initial_epoch,
        seed=seed,
        on_epoch_end=tracker.log_epoch,
        lr_param=f"{name}.lr",
        backup=backup,
    )
    save_model(model, model_path)
    write_csv(history_path, history)
    backup.discard()
    tracker.record_outputs(model_path, history_path)
    tracker.log_artifacts(history_path)


def cached_training(
    model: keras.Model, splits: tuple[Split, Split], budget_gb: float
) -> tuple[keras.Model, tuple[Split, Split]]:
    """The trainable part of ``model`` and the splits as its inputs, if they fit the budget."""
    parts = split_frozen(model)
    images = sum(len(split) for split in splits)
    needed = parts.bytes_per_image() * images
    if needed > budget_gb * 1e9:
        log.info(
            "streaming every batch through the whole model: caching the frozen part's outputs "
            "needs %.2f GB, train.cache_budget_gb is %s",
            needed / 1e9,
            budget_gb,
        )
        return model, splits
    started = time.monotonic()
    cached = tuple(
        Split(
            cached_outputs(parts.frozen, as_dataset(split, parts.inference_batch_size())),
            split.labels,
        )
        for split in splits
    )
    log.info(
        "cached the frozen part's outputs for %d images (%.2f GB) in %.1f s; training %s",
        images,
        needed / 1e9,
        time.monotonic() - started,
        parts.trainable.name,
    )
    return parts.trainable, cached
