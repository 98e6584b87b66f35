"""The training core: fit a model to the data along a plan, and return the history.

It computes only. Saving the model, writing files and logging live in the stages, which hand
in what they need as Keras callbacks (MLflow logging, per-epoch backups), the pattern of
dvclive's and MLflow's own Keras callbacks.

A phase trains its groups of layers (``model.training_groups``) in unfreezing steps: all at
once, or the top group first and one more block every ``unfreeze_every`` epochs (gradual
unfreezing). Each step is one ``fit`` of the same trainable part of the network, continuing
the epoch count; early stopping and the backups span the steps.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from src.finetune.data.splits import Split
from src.finetune.errors import PipelineError
from src.finetune.model.cut import NetworkCut, cut_below_trainable
from src.finetune.model.network import Block, set_trainable, training_groups
from src.finetune.params import trained_part
from src.finetune.training.augment import Augmentation, augmentation
from src.finetune.training.batches import batches
from src.finetune.training.caching import cached_split, cached_views
from src.finetune.training.history import Group, History, history_frame
from src.finetune.training.optimization import (
    current_rate,
    group_rates,
    learning_rate,
    make_optimizer,
    route,
)
from src.finetune.training.plan import Plan
from src.finetune.training.resume import EpochBackup, Resumed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnfreezingStep:
    """Epochs ``first`` (0-based, Keras's ``initial_epoch``) to ``end`` train ``groups``."""

    first: int
    end: int
    groups: int


def unfreezing_steps(plan: Plan, groups: int) -> list[UnfreezingStep]:
    """One step per group joining, ``unfreeze_every`` epochs apart; one step without it."""
    if not plan.unfreeze_every or groups == 1:
        return [UnfreezingStep(plan.initial_epoch, plan.end_epoch, groups)]
    starts = [
        plan.initial_epoch + k * plan.unfreeze_every
        for k in range(groups)
        if plan.initial_epoch + k * plan.unfreeze_every < plan.end_epoch
    ]
    ends = [*starts[1:], plan.end_epoch]
    return [
        UnfreezingStep(first, end, count)
        for count, (first, end) in enumerate(zip(starts, ends, strict=True), start=1)
    ]


def phase_groups(blocks: list[Block], plan: Plan) -> list[Group]:
    """Each group's name, peak learning rate and first epoch, for the log and the tracker."""
    steps = unfreezing_steps(plan, len(blocks))
    rates = group_rates(plan.settings.lr, plan.lr_decay, len(blocks))
    first = {step.groups - 1: step.first + 1 for step in steps}
    if len(steps) == 1:
        first = dict.fromkeys(range(len(blocks)), plan.initial_epoch + 1)
    return [
        Group(name=block.name, lr=rate, first_epoch=first.get(k))
        for k, (block, rate) in enumerate(zip(blocks, rates, strict=True))
    ]


def train(
    model: keras.Model,
    data: tuple[Split, Split],
    plan: Plan,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    backup: EpochBackup | None = None,
) -> History:
    """Train ``model`` on (train, validation) along ``plan``; returns the history.

    With a ``backup``, training resumes after the last epoch a killed attempt completed,
    with its weights, optimizer state, learning-rate schedule step, unfreezing step and
    early-stopping state. ``callbacks`` see every epoch as it ends, after the backup.
    """
    blocks = training_groups(model, plan.unfreeze_last)
    # the phase's whole range decides where the network is cut
    set_trainable(model, blocks, plan.train_batchnorm)
    weights = class_weights(data[0], plan.train.class_weight)
    inputs = training_inputs(model, data, plan)
    log.info(
        "%s: training %s, %s",
        plan.phase,
        trained_part(plan.unfreeze_last, plan.train_batchnorm),
        inputs.description,
    )
    steps = unfreezing_steps(plan, len(blocks))
    optimizers = GroupOptimizers(plan, blocks, inputs.steps_per_epoch)
    stopping = (
        PhaseEarlyStopping(plan.settings.early_stopping) if plan.settings.early_stopping else None
    )
    backup = backup or EpochBackup.disabled()
    backup.follow(stopping)
    resumed = backup.completed()
    recorder = EpochRecorder(resumed)

    for step in steps:
        if step.end < resumed.epoch or (stopping and stopping.stopped_epoch):
            continue
        set_trainable(model, blocks[: step.groups], plan.train_batchnorm)
        inputs.trainable.compile(
            optimizer=optimizers.for_step(step),
            loss=phase_loss(plan),
            metrics=["accuracy"],
            jit_compile=plan.jit_compile,
        )
        if step.first < resumed.epoch <= step.end:
            backup.restore(inputs.trainable)
        start = max(step.first, resumed.epoch)
        if start >= step.end or (stopping and stopping.stopped_epoch):
            continue
        inputs.trainable.fit(
            inputs.train,
            validation_data=inputs.validation,
            initial_epoch=start,
            epochs=step.end,
            # Order matters at an epoch's end: the learning rate joins the logs first, the
            # backup runs after early stopping and before the callbacks that report the
            # epoch, so an epoch is reported once it is safe.
            callbacks=[
                LearningRateInLogs(),
                keras.callbacks.TerminateOnNaN(),
                *inputs.per_epoch,
                *([stopping] if stopping else []),
                recorder,
                backup,
                *callbacks,
            ],
            class_weight=weights,
            shuffle=False,  # the dataset shuffles itself, seeded, every epoch
            verbose=1 if sys.stdout.isatty() else 2,
        )
        if inputs.trainable.stop_training and not (stopping and stopping.stopped_epoch):
            break  # TerminateOnNaN: the divergence check below says what to do

    frame = history_frame(recorder.rows)
    try:
        _fail_on_divergence(frame, f"{plan.phase}.lr")
    except PipelineError:
        backup.discard()  # resuming from diverged weights would only diverge again
        raise
    kept = int(frame["epoch"].iloc[-1])
    if stopping and stopping.best_weights is not None:
        stopping.restore_best(inputs.trainable)
        kept = stopping.best_epoch + 1
    return History(
        phase=plan.phase,
        frame=frame,
        kept_epoch=kept,
        stopped_early=bool(stopping and stopping.stopped_epoch),
        groups=phase_groups(blocks, plan),
        inputs=inputs.description,
    )


def class_weights(train: Split, kind: str) -> dict[int, float] | None:
    """Keras's ``class_weight``: none, or "balanced" as scikit-learn computes it (each class
    weighs ``n_images / (n_classes * its images)``). Keras weighs a blended MixUp or CutMix
    label by its largest class."""
    if kind == "none":
        return None
    labels = train.labels if train.labels.ndim == 1 else train.labels.argmax(axis=1)
    present = np.unique(labels)  # every class, as prepare checks; 1.0 for any other
    weights = compute_class_weight("balanced", classes=present, y=labels)
    found = dict(zip(present.tolist(), weights.tolist(), strict=True))
    return {index: found.get(index, 1.0) for index in range(train.classes)}


def phase_loss(plan: Plan) -> keras.losses.Loss:
    """Cross-entropy against the one-hot (or mixed) labels, smoothed towards uniform by
    ``label_smoothing``: the target becomes ``(1 - s) * y + s / classes``."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=plan.settings.label_smoothing)


@dataclass
class TrainingInputs:
    """The part of the network that trains, what it trains on, and how that was made."""

    trainable: keras.Model  # the whole model, or its part above the cache
    train: tf.data.Dataset
    validation: tf.data.Dataset
    steps_per_epoch: int
    description: str
    per_epoch: list[keras.callbacks.Callback]


def training_inputs(model: keras.Model, data: tuple[Split, Split], plan: Plan) -> TrainingInputs:
    """The fastest correct inputs for the phase: the frozen part's cached outputs if asked
    for and within ``train.cache_budget_gb`` (several augmented views of each image when
    augmenting), or else every batch streamed through the whole model."""
    train_split, val_split = data
    augmenter = augmentation(plan.augment, plan.seed, train_split.images.shape[1:])
    steps_per_epoch = math.ceil(len(train_split) / plan.settings.batch_size)
    views = plan.train.cached_views if augmenter else 1
    cut = cut_below_trainable(model) if plan.cache else None
    why_not = _why_not_cached(cut, data, plan, views)
    if cut is None or why_not:
        return TrainingInputs(
            trainable=model,
            train=batches(
                train_split,
                plan.settings.batch_size,
                shuffle_seed=plan.seed,
                augmentation=augmenter,
            ),
            validation=batches(val_split, plan.settings.batch_size),
            steps_per_epoch=steps_per_epoch,
            description=f"streaming every batch through the whole model ({why_not})",
            per_epoch=[ReseedEachEpoch(augmenter)] if augmenter else [],
        )
    cached_val = cached_split(cut, val_split)
    if augmenter is None:
        return TrainingInputs(
            trainable=cut.trainable,
            train=batches(
                cached_split(cut, train_split), plan.settings.batch_size, shuffle_seed=plan.seed
            ),
            validation=batches(cached_val, plan.settings.batch_size),
            steps_per_epoch=steps_per_epoch,
            description="on the frozen part's cached outputs",
            per_epoch=[],
        )
    current_view = tf.Variable(0, dtype=tf.int64, trainable=False, name="cached_view")
    stacked = cached_views(cut, train_split, augmenter, views)
    return TrainingInputs(
        trainable=cut.trainable,
        train=batches(
            stacked,
            plan.settings.batch_size,
            shuffle_seed=plan.seed,
            views=views,
            current_view=current_view,
        ),
        validation=batches(cached_val, plan.settings.batch_size),
        steps_per_epoch=steps_per_epoch,
        description=(
            f"on the frozen part's cached outputs for {views} "
            f"augmented views of each image ({augmenter.describe()}), epoch e on view e mod "
            f"{views}; train.cached_views: 0 streams a fresh augmentation every epoch instead"
        ),
        per_epoch=[CycleViews(current_view, views)],
    )


def _why_not_cached(
    cut: NetworkCut | None, data: tuple[Split, Split], plan: Plan, views: int
) -> str:
    """Why the phase streams, or an empty string when the cache can be used."""
    if cut is None:
        return "phase1.cache_features is false"
    if views == 0:
        return "augmentation is on and train.cached_views is 0: a fresh augmentation every epoch"
    needed = cut.bytes_per_image() * (views * len(data[0]) + len(data[1]))
    if needed > plan.train.cache_budget_gb * 1e9:
        return (
            f"caching the frozen part's outputs needs {needed / 1e9:.2f} GB, "
            f"train.cache_budget_gb is {plan.train.cache_budget_gb}"
        )
    return ""


class GroupOptimizers:
    """An optimizer per group, created when the group starts training and kept after.

    A step of gradual unfreezing adds a group: the groups already training keep their
    optimizer state, and the new one starts its schedule at the phase's current step, so the
    learning rate depends only on how far into the phase training is.
    """

    def __init__(self, plan: Plan, blocks: list[Block], steps_per_epoch: int) -> None:
        self.plan = plan
        self.blocks = blocks
        self.steps_per_epoch = steps_per_epoch
        self.rates = group_rates(plan.settings.lr, plan.lr_decay, len(blocks))
        self.optimizers: list[keras.optimizers.Optimizer] = []

    def for_step(self, step: UnfreezingStep) -> keras.optimizers.Optimizer:
        plan, per_epoch = self.plan, self.steps_per_epoch
        variables = [_group_variables(block) for block in self.blocks[: step.groups]]
        while len(self.optimizers) < step.groups:
            k = len(self.optimizers)
            rate = learning_rate(
                self.rates[k],
                plan.settings.schedule,
                warmup_steps=plan.settings.warmup_epochs * per_epoch,
                total_steps=plan.settings.epochs * per_epoch,
            )
            optimizer = make_optimizer(
                plan.settings.optimizer,
                rate,
                plan.settings.weight_decay,
                variables[k],
                plan.settings.ema,
            )
            optimizer.iterations.assign((step.first - plan.initial_epoch) * per_epoch)
            self.optimizers.append(optimizer)
        return route(self.optimizers, variables)


def _group_variables(block: Block) -> list:
    return [weight for layer in block.layers for weight in layer.trainable_weights]


class PhaseEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's early stopping on ``val_loss``, restoring the best epoch's weights, over a
    whole phase: one state across the phase's fits (one per unfreezing step), the best
    weights restored once, at its end, and a state the per-epoch backup can keep."""

    def __init__(self, patience: int) -> None:
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        super().on_train_begin()

    def on_train_begin(self, logs: dict | None = None) -> None:
        """A later fit of the same phase continues where the previous one stopped."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """The phase restores the best weights once it ends (``restore_best``)."""

    def restore_best(self, model: keras.Model) -> None:
        model.set_weights(self.best_weights)
        log.info(
            "early stopping: kept the weights of epoch %d (val_loss %.4f)%s",
            self.best_epoch + 1,
            self.best,
            f"; stopped after epoch {self.stopped_epoch + 1}" if self.stopped_epoch else "",
        )

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {
            "wait": self.wait,
            "best": best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state(self, state: dict[str, Any], best_weights: list | None) -> None:
        self.wait, self.best = int(state["wait"]), state["best"]
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = best_weights


class LearningRateInLogs(keras.callbacks.Callback):
    """Adds the top group's learning rate at the epoch's end to its logs, as ``lr``."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = current_rate(self.model.optimizer)


class ReseedEachEpoch(keras.callbacks.Callback):
    """Restarts the augmentation's random stream at the epoch's own seed (see ``augment``)."""

    def __init__(self, augmenter: Augmentation) -> None:
        super().__init__()
        self.augmenter = augmenter

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.augmenter.reseed(epoch)


class CycleViews(keras.callbacks.Callback):
    """Points the cached training batches at the augmented view of this epoch."""

    def __init__(self, current_view: tf.Variable, views: int) -> None:
        super().__init__()
        self.current_view, self.views = current_view, views

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current_view.assign(epoch % self.views)


class EpochRecorder(keras.callbacks.Callback):
    """The history rows: those a killed attempt completed, then each epoch as it ends."""

    def __init__(self, resumed: Resumed) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = list(resumed.rows)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})


def _fail_on_divergence(frame: pd.DataFrame, lr_param: str) -> None:
    bad = frame[~frame["loss"].map(math.isfinite)]
    if len(bad):
        epoch = int(bad["epoch"].iloc[0])
        raise PipelineError(
            f"training diverged: the loss is not finite at epoch {epoch}; lower {lr_param} "
            "and run again"
        )


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic``, use deterministic ops too.

    Deterministic ops cost nothing measurable on the CPU (see README: Speed); on a GPU,
    TensorFlow picks slower deterministic kernels where it must, and Keras turns XLA off.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
