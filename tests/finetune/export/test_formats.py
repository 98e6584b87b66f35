"""Each export format on a tiny model: written with its class names, loaded in its own
runtime, predicting what Keras predicts; int8 smaller; a failing format is one line."""

import json
import re

import keras
import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.export.checks import (
    MIN_AGREEMENT,
    check,
    latency_ms,
    missed_targets,
    predict_all,
)
from src.finetune.export.formats import Format, export_model, without_normalization_layers
from src.finetune.export.results import Checked
from src.finetune.export.runtimes import KerasRuntime, open_model
from tests.support.exports import NAMES


def test_without_normalization_layers_computes_the_same(tiny, images):
    swapped = without_normalization_layers(tiny)
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in swapped.layers)
    np.testing.assert_allclose(swapped.predict(images, verbose=0), tiny.predict(images, verbose=0),
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("format", list(Format))
def test_each_format_runs_in_its_runtime_with_its_class_names(format, tiny, images, exported):
    loaded = open_model(exported / format.file_name)
    assert loaded.class_names == NAMES
    assert loaded.runtime.input_shape == (16, 16, 3) and loaded.runtime.outputs == 3
    reference = tiny.predict(images, verbose=0)
    predicted = predict_all(loaded.runtime, images)
    agreement = np.mean(predicted.argmax(1) == reference.argmax(1))
    if format.quantized:
        assert agreement >= 0.9
    else:
        assert agreement >= MIN_AGREEMENT
        np.testing.assert_allclose(predicted, reference, atol=1e-4)


def test_onnx_holds_the_names_in_its_own_metadata(exported):
    import onnx

    metadata = {p.key: p.value for p in onnx.load(exported / "model.onnx").metadata_props}
    assert json.loads(metadata["class_names"]) == list(NAMES)


def test_litert_files_and_the_saved_model_carry_a_sidecar(exported):
    for sidecar in ("model.labels.json", "model_int8.labels.json", "saved_model/labels.json"):
        assert json.loads((exported / sidecar).read_text()) == {"class_names": list(NAMES)}


def test_int8_is_at_least_three_times_smaller_than_float_litert(exported):
    float_size = (exported / "model.tflite").stat().st_size
    assert float_size >= 3 * (exported / "model_int8.tflite").stat().st_size


def test_int8_keeps_the_input_scaling_in_float_and_the_rest_in_int8(exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported / "model_int8.tflite"))
    dtypes = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    scaling = [name for name in dtypes if re.search(r"/normalization(_\d+)*/(mul|add)$", name)]
    assert len(scaling) == 2, list(dtypes)
    assert all(dtypes[name] == np.float32 for name in scaling)
    convolution = [name for name in dtypes if "conv2d" in name and "Relu" in name]
    assert convolution and all(dtypes[name] == np.int8 for name in convolution)


def test_a_failing_export_raises_naming_the_cause(tiny, tmp_path):
    wrong = np.zeros((4, 8, 8, 3), np.float32)  # calibration images of another size
    taken = tuple(tiny.inputs[0].shape[1:])
    with pytest.raises(PipelineError) as raised:
        export_model(tiny, Format.LITERT_INT8, tmp_path / "model_int8.tflite", NAMES, wrong)
    assert str(raised.value) == (
        f"int8 calibration images are (8, 8, 3), the model takes {taken}; calibrate with the "
        "prepared training images"
    )
    assert not (tmp_path / "model_int8.tflite").exists()


def test_check_measures_accuracy_agreement_size_and_latency(tiny, images, exported):
    labels = tiny.predict(images, verbose=0).argmax(1)
    keras_check, reference = check("keras", KerasRuntime(tiny), exported / "model.onnx",
                                   images, labels)  # fmt: skip
    assert keras_check.accuracy == 1.0 and keras_check.agreement == 1.0
    runtime = open_model(exported / "model.onnx").runtime
    other = (reference + 1) % 3
    onnx_check, _ = check("onnx", runtime, exported / "model.onnx", images, labels, other)
    assert onnx_check.agreement == 0.0, "agreement is measured against the reference given"
    assert onnx_check.size_mb == round((exported / "model.onnx").stat().st_size / 1e6, 3)
    assert onnx_check.latency_ms_batch1 > 0 and onnx_check.latency_ms_batch32 > 0
    assert latency_ms(runtime, images[:3], 32) > 0, "fewer images than the batch are repeated"


def checked(format, accuracy, size_mb=10.0, agreement=1.0):
    return Checked(format=format, path=format, size_mb=size_mb, accuracy=accuracy,
                   agreement=agreement, latency_ms_batch1=1.0, latency_ms_batch32=1.0)  # fmt: skip


def test_missed_targets_name_each_shortfall():
    keras_check = checked("keras", 0.90)
    met = [checked("onnx", 0.90), checked("litert", 0.90), checked("litert_int8", 0.895, 3.0)]
    assert missed_targets(keras_check, met) == []
    misses = missed_targets(
        keras_check,
        [checked("onnx", 0.80, agreement=0.9), checked("litert", 0.9),
         checked("litert_int8", 0.85, size_mb=5.0)],
    )  # fmt: skip
    assert len(misses) == 3
    assert misses[0].startswith("onnx agrees with the Keras model on 90.0%")
    assert misses[1].startswith("litert_int8 loses 5.0 points")
    assert "only 2.0 times smaller" in misses[2]


def test_a_file_of_no_known_format_is_one_line(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(PipelineError, match="not a model this pipeline reads"):
        open_model(tmp_path / "model.pt")
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(PipelineError, match=r"broken\.onnx is not a readable ONNX model"):
        open_model(tmp_path / "broken.onnx")
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(PipelineError, match=r"broken\.tflite is not a readable LiteRT model"):
        open_model(tmp_path / "broken.tflite")
