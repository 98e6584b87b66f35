"""The learning-rate range test (Leslie Smith's, fastai's ``lr_find``): train a phase's
trainable part for a few hundred steps while the rate grows exponentially from tiny to large,
and read off where the loss falls fastest before it blows up.

A rate far below that point wastes epochs, one beyond it diverges; the range test costs a
fraction of an epoch and runs on the phase's own inputs (the frozen part's cached outputs
when the phase would use them). It trains a copy of the weights' values: the model is given
its own weights back at the end, so the test changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from src.finetune.data.splits import Split
from src.finetune.model.network import set_trainable, training_groups
from src.finetune.training.loop import phase_loss, training_inputs
from src.finetune.training.optimization import make_optimizer
from src.finetune.training.plan import Plan

SMOOTHING = 0.98  # the loss's exponential moving average, bias-corrected, as fastai smooths it
DIVERGED = 4.0  # the sweep stops once the smoothed loss is this many times its lowest


@dataclass(frozen=True)
class RateSweep:
    """What the sweep saw: each step's rate and (smoothed) loss, and the rates it suggests."""

    rates: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    steepest: float  # where the smoothed loss falls fastest: the suggestion
    minimum: float  # where the smoothed loss is lowest
    stopped: str  # why the sweep ended

    @property
    def suggested(self) -> float:
        """The rate to train at: the steepest fall, never beyond a tenth of the minimum's rate
        (past which the loss is about to turn), never below the sweep's first rate."""
        return max(self.rates[0], min(self.steepest, self.minimum / 10))


def sweep(
    model: keras.Model,
    train: Split,
    plan: Plan,
    start: float = 1e-7,
    end: float = 1.0,
    steps: int = 200,
) -> RateSweep:
    """Train ``plan``'s trainable part of ``model`` for up to ``steps`` batches of ``train``,
    the rate growing from ``start`` to ``end``; the model keeps its weights."""
    if not 0 < start < end or steps < 10:
        raise ValueError("the sweep needs 0 < start < end and at least 10 steps")
    set_trainable(model, training_groups(model, plan.unfreeze_last), plan.train_batchnorm)
    inputs = training_inputs(model, (train, train.take(np.arange(min(len(train), 1)))), plan)
    trainable = inputs.trainable
    saved = [weight.numpy() for weight in model.weights]
    variables = trainable.trainable_variables
    optimizer = make_optimizer(
        plan.settings.optimizer, start, plan.settings.weight_decay, variables
    )
    trainable.compile(optimizer=optimizer, loss=phase_loss(plan), jit_compile=plan.jit_compile)
    growth = (end / start) ** (1 / (steps - 1))
    rates, raw, smoothed = [], [], []
    average, lowest, stopped = 0.0, math.inf, f"reached {end:g} after {steps} steps"
    batches = iter(inputs.train.repeat())
    try:
        for step in range(steps):
            rate = start * growth**step
            optimizer.learning_rate.assign(rate)
            x, y = next(batches)
            loss = float(trainable.train_on_batch(x, y))
            if not math.isfinite(loss):
                stopped = f"the loss was not finite at rate {rate:.2g}"
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            value = average / (1 - SMOOTHING ** (step + 1))
            rates.append(rate)
            raw.append(loss)
            smoothed.append(value)
            lowest = min(lowest, value)
            if step > 10 and value > DIVERGED * lowest:
                stopped = f"the loss rose to {DIVERGED:g} times its lowest at rate {rate:.2g}"
                break
    finally:
        for weight, value in zip(model.weights, saved, strict=True):
            weight.assign(value)
    if len(rates) < 3:
        raise ValueError(f"the sweep stopped after {len(rates)} steps ({stopped}); lower start")
    return RateSweep(rates, smoothed, raw, *suggestions(rates, smoothed), stopped)


def suggestions(rates: list[float], losses: list[float]) -> tuple[float, float]:
    """(steepest, minimum): the rate where the smoothed loss falls fastest against the log of
    the rate, and the rate of its lowest point. The last tenth of the sweep is left out of
    the steepest fall (the loss may plunge there on its way to diverging)."""
    logs, values = np.log10(rates), np.asarray(losses)
    slopes = np.gradient(values, logs)
    usable = max(2, int(len(rates) * 0.9))
    steepest = rates[int(np.argmin(slopes[:usable]))]
    minimum = rates[int(np.argmin(values))]
    return steepest, minimum
