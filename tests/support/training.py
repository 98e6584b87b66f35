"""Short training runs on tiny random data, along the tests' plan."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd

from src.finetune.data.splits import Split
from src.finetune.model.backbones import BACKBONES
from src.finetune.model.network import build_model, set_trainable, training_groups
from src.finetune.params import AugmentParams, Phase, Phase1Params, Phase2Params, TrainParams
from src.finetune.training.history import HISTORY_COLUMNS, History, history_frame
from src.finetune.training.loop import train
from src.finetune.training.plan import Plan

# TinyNet's blocks from the top, in layers: block3 with the top convolution, block2 (the
# depthwise one, with its residual Add), block1 (see src/finetune/model/tiny.py).
TOP, BLOCK2, BLOCK1 = 6, 7, 3


def tiny_split(n: int = 20, seed: int = 0) -> Split:
    """``n`` random 32x32 images, labels cycling through the ten classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Split(images, np.arange(n, dtype=np.int64) % 10, 10)


def learnable_split(n: int = 200, seed: int = 0) -> Split:
    """``n`` 32x32 images whose brightness is their class (of ten): unlike random images, a
    tiny network learns them within a few steps."""
    labels = np.arange(n, dtype=np.int64) % 10
    noise = np.random.default_rng(seed).integers(0, 20, (n, 32, 32, 3))
    return Split((labels[:, None, None, None] * 23 + noise).astype(np.uint8), labels, 10)


def augment(**on: Any) -> AugmentParams:
    """Augmentation params with every key off but those given."""
    off = {
        "flip": False,
        "crop_pad": 0,
        "rotation": 0.0,
        "color_jitter": 0.0,
        "randaugment": 0,
        "erasing": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
    }
    return AugmentParams(**(off | on))


def tiny_plan(**overrides: Any) -> Plan:
    """The tests' plan: phase 1, one epoch from 0, batch 10, Adam 1e-3, nothing else, streamed.

    ``cache=True`` lets the phase train on cached outputs within ``cache_budget_gb`` (0 by
    default: streamed); phase 2's keys (``unfreeze_last``...) go with ``phase="phase2"``.
    """
    phase = Phase(overrides.pop("phase", "phase1"))
    cache = overrides.pop("cache", False)
    budget = overrides.pop("cache_budget_gb", 0.0)
    train = TrainParams(
        class_weight=overrides.pop("class_weight", "none"),
        cache_budget_gb=budget if cache else 0.0,
        cached_views=overrides.pop("cached_views", 0),
        deterministic=True,
        mixed_precision=False,
        jit_compile=False,
        distribution="none",
        worker_timeout_s=300,
    )
    plan = {
        key: overrides.pop(key)
        for key in ("initial_epoch", "seed", "augment", "jit_compile")
        if key in overrides
    }
    settings = {
        "epochs": 1,
        "lr": 1e-3,
        "batch_size": 10,
        "optimizer": "adam",
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_epochs": 0,
        "label_smoothing": 0.0,
        "early_stopping": 0,
        "ema": 0.0,
    } | overrides
    phase2_only = {"unfreeze_last", "lr_decay", "unfreeze_every", "train_batchnorm"} & set(settings)
    if phase is Phase.EXTRACT and not phase2_only:
        section = Phase1Params(**settings, cache_features=cache)
    else:
        defaults = {"unfreeze_last": 0, "lr_decay": 1.0, "unfreeze_every": 0}
        section = Phase2Params(**(defaults | {"train_batchnorm": False} | settings))
    return Plan(
        phase=phase,
        settings=section,
        augment=plan.get("augment", augment()),
        train=train,
        seed=plan.get("seed", 0),
        initial_epoch=plan.get("initial_epoch", 0),
        jit_compile=plan.get("jit_compile", False),
        unfreeze_last=section.unfreeze_last if isinstance(section, Phase2Params) else None,
    )


def unfreeze(model: keras.Model, count: int) -> None:
    """Train the last ``count`` layers of the base and the head, BatchNormalization excluded,
    as phase 2 does."""
    set_trainable(model, training_groups(model, count))


def fresh_model(
    dropout: float = 0.0, image_size: int = 32, backbone: str = "tinynet"
) -> keras.Model:
    """A backbone (TinyNet unless a test needs a real network's shape) with random weights and
    a new ten-class head on 32x32 images, the same for every call."""
    keras.utils.set_random_seed(0)
    return build_model(BACKBONES[backbone], None, dropout, image_size, (32, 32, 3), 10)


def brief_train(
    model: keras.Model,
    splits: tuple[Split, Split] | None = None,
    callbacks: tuple = (),
    backup: Any = None,
    **plan: Any,
) -> History:
    """``train`` on tiny splits along the tests' plan, overridden by ``plan``."""
    splits = splits or (tiny_split(), tiny_split(seed=1))
    return train(model, splits, tiny_plan(**plan), callbacks=callbacks, backup=backup)


def frame(first: int, n: int) -> pd.DataFrame:
    """A history of ``n`` epochs from ``first``, with made-up numbers."""
    rows = [{"epoch": first + i, **{c: 0.1 * i for c in HISTORY_COLUMNS[1:]}} for i in range(n)]
    return history_frame(rows)
