"""Where and how the training stages compute: mixed precision, XLA and distribution.

Each switch is ``auto`` by default: on where it helps (a visible GPU), off on a CPU, where
float16 is slower and XLA compiles for longer than it saves on a short run.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from src.finetune.errors import PipelineError
from src.finetune.params import TrainParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Devices:
    strategy: tf.distribute.Strategy
    jit_compile: bool
    mixed_precision: bool


def configure(train: TrainParams) -> Devices:
    """Apply the ``train`` switches; build and load models inside ``strategy.scope()``."""
    # A multi-worker strategy must exist before TensorFlow starts its runtime, which listing
    # the devices does.
    multi_worker = _multi_worker() if train.distribution == "multi_worker" else None
    gpus = tf.config.list_logical_devices("GPU")
    mixed = _resolve(train.mixed_precision, bool(gpus))
    # Layers take the policy when they are built; the softmax layer is float32 whatever it is.
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = multi_worker or _strategy(train.distribution, gpus)
    devices = Devices(strategy, _jit_compile(train, bool(gpus)), mixed)
    log.info(
        "computing on %s with %d replica(s); mixed precision %s, XLA %s",
        ", ".join(d.name for d in gpus) or "the CPU",
        strategy.num_replicas_in_sync,
        "on" if mixed else "off",
        "on" if devices.jit_compile else "off",
    )
    return devices


def _resolve(value: bool | str, gpu: bool) -> bool:
    return gpu if value == "auto" else bool(value)


def _jit_compile(train: TrainParams, gpu: bool) -> bool:
    """XLA as asked, unless deterministic ops are: Keras then compiles without XLA (its
    kernels are not all deterministic), so determinism wins, and the log says so once."""
    wanted = _resolve(train.jit_compile, gpu)
    if wanted and train.deterministic:
        log.info(
            "XLA is off: train.deterministic is on, and Keras does not compile with XLA under "
            "deterministic ops; set train.deterministic: false to trade repeatable numbers "
            "for XLA's speed"
        )
        return False
    return wanted


def _strategy(kind: str, gpus: list) -> tf.distribute.Strategy:
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise AssertionError(f"unknown distribution {kind}")  # the params schema rules it out


def _multi_worker() -> tf.distribute.Strategy:
    if "TF_CONFIG" not in os.environ:
        raise PipelineError(
            "train.distribution: multi_worker needs TF_CONFIG describing the cluster and this "
            "worker's index (see README: Speed); or use mirrored or auto"
        )
    try:
        json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as error:
        raise PipelineError(f"TF_CONFIG is not valid JSON ({error})") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
