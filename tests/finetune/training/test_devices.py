"""The train.* switches: what auto means on a CPU, float32 softmax under mixed precision, and
mirrored training on the CPU split into two logical devices."""

import json
import os
import subprocess
import sys

import keras
import pytest

from src.finetune.errors import PipelineError
from src.finetune.params import TrainParams
from src.finetune.training.devices import configure
from tests.support.params import ROOT
from tests.support.servers import free_port
from tests.support.training import BLOCK2, TOP, fresh_model


def switches(**overrides) -> TrainParams:
    values = {
        "class_weight": "none",
        "cache_budget_gb": 1.0,
        "cached_views": 0,
        "deterministic": False,
        "mixed_precision": "auto",
        "jit_compile": "auto",
        "distribution": "auto",
        "worker_timeout_s": 60,
    }
    return TrainParams(**(values | overrides))


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_auto_is_off_on_a_cpu(restore_policy):
    devices = configure(switches())
    assert not devices.mixed_precision and not devices.jit_compile
    assert devices.strategy.num_replicas_in_sync == 1
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_precision_keeps_the_softmax_in_float32(restore_policy):
    devices = configure(switches(mixed_precision=True, jit_compile=True))
    assert devices.mixed_precision and devices.jit_compile
    model = fresh_model()
    assert model.get_layer("avg_pool").compute_dtype == "float16"
    assert model.get_layer("probs").compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"


def test_deterministic_ops_win_over_xla_and_say_so_once(restore_policy, caplog):
    caplog.set_level("INFO")
    devices = configure(switches(jit_compile=True, deterministic=True))
    assert not devices.jit_compile
    notes = [r.getMessage() for r in caplog.records if "XLA is off" in r.getMessage()]
    assert len(notes) == 1 and "train.deterministic: false" in notes[0]
    caplog.clear()
    assert configure(switches(jit_compile=False, deterministic=True)).jit_compile is False
    assert not [r for r in caplog.records if "XLA is off" in r.getMessage()]


def test_multi_worker_without_a_cluster_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(PipelineError, match="multi_worker needs TF_CONFIG"):
        configure(switches(distribution="multi_worker"))


# A fresh process: logical devices must be set before TensorFlow starts its runtime.
MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from src.finetune.data.prepared import load_split
from src.finetune.params import TrainParams
from src.finetune.training.devices import configure
from src.finetune.training.loop import seed_everything, train
from tests.support.training import BLOCK2, TOP, fresh_model, tiny_plan

seed_everything(0)
devices = configure(TrainParams(class_weight="none", cache_budget_gb=1.0, cached_views=0,
                                deterministic=True,
                                mixed_precision="auto", jit_compile="auto",
                                distribution=sys.argv[1], worker_timeout_s=60))
data = sys.argv[2]
plan = tiny_plan(phase="phase2", epochs=2, batch_size=30, **json.loads(sys.argv[3]))
with devices.strategy.scope():
    model = fresh_model()
    history = train(model, (load_split(data, "train"), load_split(data, "val")), plan)
print(json.dumps({"replicas": devices.strategy.num_replicas_in_sync,
                  "history": history.frame.to_dict("list")}))
"""


def train_on(distribution: str, data, plan: dict | None = None, **env: str) -> dict:
    plan = plan or {"unfreeze_last": TOP}
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, distribution, str(data), json.dumps(plan)],
        cwd=ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mirrored_training_on_two_logical_cpus_matches_single_device(pipeline):
    """Discriminative rates and gradual unfreezing too: Keras's MultiOptimizer under
    MirroredStrategy, one optimizer per block, the second joining at the second epoch."""
    plan = {"unfreeze_last": TOP + BLOCK2, "lr_decay": 0.5, "unfreeze_every": 1, "cache": True}
    mirrored = train_on("mirrored", pipeline / "data/prepared", plan | {"cache_budget_gb": 1.0})
    single = train_on("none", pipeline / "data/prepared", plan | {"cache_budget_gb": 1.0})
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["history"].keys() == single["history"].keys()
    assert mirrored["history"]["epoch"] == single["history"]["epoch"] == [1, 2]
    assert mirrored["history"]["lr"] == pytest.approx(single["history"]["lr"])
    for key in ("accuracy", "val_accuracy"):
        for ours, theirs in zip(mirrored["history"][key], single["history"][key], strict=True):
            assert 0.0 <= ours <= 1.0 and abs(ours - theirs) <= 0.15
    assert mirrored["history"]["loss"][-1] == pytest.approx(single["history"]["loss"][-1], rel=0.1)


def test_multi_worker_runs_from_tf_config(pipeline):
    cluster = {
        "cluster": {"worker": [f"127.0.0.1:{free_port()}"]},
        "task": {"type": "worker", "index": 0},
    }
    trained = train_on("multi_worker", pipeline / "data/prepared", TF_CONFIG=json.dumps(cluster))
    assert trained["replicas"] == 1 and trained["history"]["epoch"] == [1, 2]
