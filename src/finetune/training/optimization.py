"""Optimizers, learning-rate schedules and discriminative learning rates for one phase.

Each group of layers (see ``model.training_groups``) gets an optimizer of its own, at its own
peak rate: the head and the top block at ``lr``, the k-th block below at ``lr * lr_decay^k``
(ULMFiT's discriminative fine-tuning, fastai's ``slice(lr/..., lr)``). Keras's
``MultiOptimizer`` routes each variable to its group's optimizer; a single group keeps a plain
optimizer, exactly as the two-phase recipe compiles it.
"""

from __future__ import annotations

import keras

MOMENTUM = 0.9  # sgd: Nesterov momentum, as timm and fastai use it for fine-tuning


def learning_rate(
    peak: float, schedule: str, warmup_steps: int, total_steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``peak`` as a number, or a schedule: linear warm-up from 0, then constant or cosine to 0.

    Keras's ``CosineDecay`` does both: its warm-up reaches ``peak`` after ``warmup_steps``, and
    ``alpha`` is where the decay ends as a fraction of the peak, so ``alpha=1`` holds it.
    """
    if schedule == "constant" and warmup_steps == 0:
        return peak
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=1.0 if schedule == "constant" else 0.0,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(
    kind: str,
    rate: float | keras.optimizers.schedules.LearningRateSchedule,
    weight_decay: float,
    variables: list,
    ema: float = 0.0,
) -> keras.optimizers.Optimizer:
    """One optimizer for ``variables``; decoupled weight decay skips biases and normalisation.
    With ``ema`` (a decay), it keeps a moving average of the weights and Keras replaces the
    weights with it when ``fit`` ends (the EfficientNetV2 recipe's model EMA).

    Keras decays weights the decoupled way for every optimizer (``w -= lr * wd * w``, as
    AdamW does). Biases, BatchNormalization's scale and offset, and every other vector are
    excluded, the convention of timm and of the AdamW paper.
    """
    decay = weight_decay or None
    average = {"use_ema": True, "ema_momentum": ema} if ema else {}
    if kind == "sgd":
        optimizer = keras.optimizers.SGD(
            rate, momentum=MOMENTUM, nesterov=True, weight_decay=decay, **average
        )
    elif kind == "adamw":
        optimizer = keras.optimizers.AdamW(rate, weight_decay=weight_decay, **average)
    else:
        optimizer = keras.optimizers.Adam(rate, weight_decay=decay, **average)
    if decay:
        optimizer.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) <= 1])
    return optimizer


def group_rates(peak: float, decay: float, groups: int) -> list[float]:
    """Peak rate of each group from the top down: ``peak * decay**k``."""
    return [peak * decay**k for k in range(groups)]


def route(
    optimizers: list[keras.optimizers.Optimizer], variables: list[list]
) -> keras.optimizers.Optimizer:
    """One optimizer for all groups: the only one, or a ``MultiOptimizer`` routing each
    variable, by its path, to its group's optimizer (serialisable, unlike a selector function)."""
    if len(optimizers) == 1:
        return optimizers[0]
    routes = {v.path: opt for opt, group in zip(optimizers, variables, strict=True) for v in group}
    table = keras.optimizers.OptimizerMap(default_optimizer=optimizers[0], optimizer_map=routes)
    return keras.optimizers.MultiOptimizer(table)


def current_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The top group's learning rate now (a ``MultiOptimizer`` has none of its own)."""
    # Under mixed precision, Keras wraps the optimizer in a LossScaleOptimizer.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        optimizer = optimizer.optimizers[0]
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
