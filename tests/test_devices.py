"""The train.* switches: what auto means on a CPU, float32 softmax under mixed precision, and
mirrored training on the CPU split into two logical devices."""

import json
import os
import subprocess
import sys

import keras
import pytest

from src.finetune.devices import configure
from src.finetune.errors import PipelineError
from src.finetune.model import build_model
from src.finetune.params import TrainParams
from tests.conftest import ROOT, free_port


def switches(**overrides) -> TrainParams:
    values = {
        "cache_budget_gb": 1.0,
        "mixed_precision": "auto",
        "jit_compile": "auto",
        "distribution": "auto",
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
    model = build_model(weights=None, dropout=0.0, image_size=32)
    assert model.get_layer("avg_pool").compute_dtype == "float16"
    assert model.get_layer("probs").compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"


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

from src.finetune.data import Split, load_split
from src.finetune.devices import configure
from src.finetune.model import build_model, compile_for_training, unfreeze_top
from src.finetune.params import TrainParams
from src.finetune.training import seed_everything, train

seed_everything(0)
devices = configure(TrainParams(cache_budget_gb=1.0, mixed_precision="auto",
                                jit_compile="auto", distribution=sys.argv[1]))
data = sys.argv[2]
with devices.strategy.scope():
    model = build_model(None, 0.0, 32)
    unfreeze_top(model, 80)
    compile_for_training(model, 1e-3)
    history = train(model, load_split(data, "train"), load_split(data, "val"), batch_size=30,
                    epochs=2, initial_epoch=0, seed=0, on_epoch_end=lambda *_: None,
                    lr_param="phase1.lr")
print(json.dumps({"replicas": devices.strategy.num_replicas_in_sync,
                  "history": history.to_dict("list")}))
"""


def train_on(distribution: str, data, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, distribution, str(data)],
        cwd=ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mirrored_training_on_two_logical_cpus_matches_single_device(pipeline):
    mirrored = train_on("mirrored", pipeline / "data/prepared")
    single = train_on("none", pipeline / "data/prepared")
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["history"].keys() == single["history"].keys()
    assert mirrored["history"]["epoch"] == single["history"]["epoch"] == [1, 2]
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
