"""Where and how the training stages compute: mixed precision, XLA and distribution.

Each switch is ``auto`` by default: on where it helps (a visible GPU), off on a CPU, where
float16 is slower and XLA compiles for longer than it saves on a short run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
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
    chief: bool = True  # writes the outputs and logs to MLflow; every other worker only trains
    workers: int = 1  # processes training together: more than one with multi_worker


def configure(train: TrainParams) -> Devices:
    """Apply the ``train`` switches; build and load models inside ``strategy.scope()``."""
    # A multi-worker strategy must exist before TensorFlow starts its runtime, which listing
    # the devices does.
    multi_worker, chief, workers = (
        _multi_worker(train.worker_timeout_s)
        if train.distribution == "multi_worker"
        else (None, True, 1)
    )
    gpus = tf.config.list_logical_devices("GPU")
    mixed = _resolve(train.mixed_precision, bool(gpus))
    # Layers take the policy when they are built; the softmax layer is float32 whatever it is.
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = multi_worker or _strategy(train.distribution, gpus)
    devices = Devices(strategy, _jit_compile(train, bool(gpus)), mixed, chief, workers)
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


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras's ``fit`` hands it.

    With two or more workers Keras reduces its first (x, y) batch, a nest, to build the model,
    and each step's scalar metrics along ``axis=0``; TensorFlow's reduce takes one tensor and
    refuses an axis on a scalar (keras-team/keras#20329). Reducing each tensor of the nest on
    its own, a scalar across workers only, is what both calls mean.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(one):
            rank = self.experimental_local_results(one)[0].shape.rank
            return super(_MultiWorkerStrategy, self).reduce(
                reduce_op, one, None if rank == 0 else axis
            )

        return tf.nest.map_structure(reduce_one, value)


_WATCHDOG = """
import os, signal, sys, time
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if os.getppid() != parent:
        sys.exit(0)
    time.sleep(0.1)
print(message, file=sys.stderr, flush=True)
os.kill(parent, signal.SIGKILL)
"""


def _multi_worker(timeout_s: int) -> tuple[tf.distribute.Strategy, bool, int]:
    """The strategy of this worker of the cluster TF_CONFIG describes, whether it is the
    chief (the ``chief`` task, or worker 0 when there is none), and the number of workers.

    Creating the strategy waits, inside TensorFlow, for every worker to connect, and nothing
    in this process interrupts that wait: if a peer has not come after ``timeout_s`` seconds,
    a watchdog process says so in one line and kills it (no MLflow run is open yet, no output
    written). Collective operations time out after as long, with TensorFlow's error.
    """
    if "TF_CONFIG" not in os.environ:
        raise PipelineError(
            "train.distribution: multi_worker needs TF_CONFIG describing the cluster and this "
            "worker's index (see docs/speed.md); or use mirrored or auto"
        )
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        cluster, task = dict(config["cluster"]), dict(config["task"])
        kind, index = task["type"], int(task["index"])
        addresses = [a for tasks in cluster.values() for a in tasks]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise PipelineError(
            f"TF_CONFIG is not a cluster and task description ({type(error).__name__}: "
            f"{error}); see docs/speed.md"
        ) from None
    message = (
        f"error: {kind} {index} of TF_CONFIG: not every worker of {', '.join(addresses)} "
        f"connected within {timeout_s} s (train.worker_timeout_s); start all of them "
        "with the same commit and data, or raise the timeout"
    )
    # TensorFlow holds the GIL while it waits for the cluster, so no Python thread or signal
    # handler of this process runs until it is done: the watchdog is a process of its own.
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout_s), message]
    )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
    try:
        strategy = _MultiWorkerStrategy(communication_options=options)
    finally:
        watchdog.kill()
        watchdog.wait()
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return strategy, chief, len(addresses)
