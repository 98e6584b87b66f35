"""Writing a Keras model in each export format, with Keras's own ``model.export``.

Each format is one file, or one folder, in the export directory, and carries the model's class
names (see ``model.labels``).
"""

from __future__ import annotations

import enum
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.finetune.entrypoint import LITERT_NOTICES, native_notices_filtered
from src.finetune.errors import PipelineError
from src.finetune.model import labels

if TYPE_CHECKING:  # the report reads the formats' names without loading Keras
    import keras


class Format(enum.StrEnum):
    SAVED_MODEL = "saved_model"  # TensorFlow Serving, TF.js converters
    ONNX = "onnx"  # ONNX Runtime, TensorRT, OpenVINO
    LITERT = "litert"  # LiteRT (TensorFlow Lite): phones, edge devices
    LITERT_INT8 = "litert_int8"  # the same with int8 weights and activations

    @property
    def file_name(self) -> str:
        return FILE_NAMES[self]

    @property
    def runtime(self) -> str:
        return RUNTIMES[self]

    @property
    def quantized(self) -> bool:
        return self is Format.LITERT_INT8


FILE_NAMES = {
    Format.SAVED_MODEL: "saved_model",
    Format.ONNX: "model.onnx",
    Format.LITERT: "model.tflite",
    Format.LITERT_INT8: "model_int8.tflite",
}
RUNTIMES = {
    Format.SAVED_MODEL: "TensorFlow",
    Format.ONNX: "ONNX Runtime",
    Format.LITERT: "LiteRT",
    Format.LITERT_INT8: "LiteRT",
}


def export_model(
    model: keras.Model,
    format: Format,
    path: Path,
    class_names: tuple[str, ...],
    calibration: np.ndarray,
) -> None:
    """Write ``model`` to ``path`` in ``format``, its class names with it.

    ``calibration`` (float images the model takes) gives int8 quantisation the ranges of real
    activations; the float formats ignore it.
    """
    model = without_normalization_layers(model)
    if format is Format.SAVED_MODEL:
        model.export(str(path), format="tf_saved_model", verbose=False)
        labels.write_sidecar(path, class_names)
    elif format is Format.ONNX:
        model.export(str(path), format="onnx", verbose=False)
        _add_onnx_labels(path, class_names)
    elif format is Format.LITERT:
        model.export(str(path), format="litert", verbose=False)
        labels.write_sidecar(path, class_names)
    else:
        expected = tuple(model.inputs[0].shape[1:])
        if tuple(calibration.shape[1:]) != expected:
            raise PipelineError(
                f"int8 calibration images are {tuple(calibration.shape[1:])}, the model takes "
                f"{expected}; calibrate with the prepared training images"
            )
        path.write_bytes(quantized_litert(model, calibration))
        labels.write_sidecar(path, class_names)


def quantized_litert(
    model: keras.Model, calibration: np.ndarray, float_rescaling: bool = True
) -> bytes:
    """``model`` as a LiteRT file with int8 weights and activations, except its ``Rescaling``
    layers, kept in float (TensorFlow's selective quantisation).

    A Rescaling layer maps the 0-255 pixels to the backbone's input range; quantised, its
    output is rounded to a 256-step grid that is not the pixels' own, and every image is
    blurred by it before the first convolution. On the demo's digits (359 test images, three
    calibration draws) that cost 1.4 to 1.7 points of accuracy against the Keras model; kept
    in float it costs -0.6 to +0.3, for no more bytes (the layer has no weights). The
    conversion goes through a SavedModel, as Keras's own LiteRT export does.
    ``float_rescaling=False`` quantises everything (to measure the difference:
    benchmarks/quantization.py).
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model, native_notices_filtered(LITERT_NOTICES):
        model.export(saved_model, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _one_by_one(calibration)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter)
        float_nodes = float_rescaling and _rescaling_outputs(model, debugger.calibrated_model)
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=float_nodes or None
        )
        return debugger.get_nondebug_quantized_model()


def _rescaling_outputs(model: keras.Model, converted: bytes) -> list[str]:
    """The converted model's tensors that ``model``'s Rescaling layers compute (their
    multiplication and their addition), named as the converter names them:
    ``<scopes>/<layer name>[_<n>]/mul``."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    rescaling = {
        layer.name
        for layer in model._flatten_layers()  # the nested backbone's layers too
        if isinstance(layer, keras.layers.Rescaling)
    }
    if not rescaling:
        return []
    pattern = re.compile(rf"/({'|'.join(map(re.escape, rescaling))})(_\d+)?/(mul|add)$")
    tensors = Interpreter(model_content=converted).get_tensor_details()
    return [tensor["name"] for tensor in tensors if pattern.search(tensor["name"])]


def without_normalization_layers(model: keras.Model) -> keras.Model:
    """The same model, every other layer shared, with each ``Normalization`` layer replaced by
    the ``Rescaling`` that computes the same thing.

    Keras keeps a Normalization layer's mean and variance as captured constants, not
    variables; tf2onnx leaves those as graph inputs nobody feeds (ONNX Runtime then refuses
    to run: "Required inputs ... Sub/y:0 are missing"). As a per-channel scale and offset
    they are ordinary constants in every format.
    """
    import keras

    def replace(layer: keras.layers.Layer) -> keras.layers.Layer:
        if not isinstance(layer, keras.layers.Normalization):
            return layer
        mean = np.asarray(layer.mean, np.float32).reshape(-1)
        variance = np.asarray(layer.variance, np.float32).reshape(-1)
        std = np.maximum(np.sqrt(variance), keras.backend.epsilon())  # as the layer divides
        return keras.layers.Rescaling(scale=1 / std, offset=-mean / std, name=layer.name)

    clone = keras.models.clone_model(model, clone_function=replace, recursive=True)
    clone(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))  # export needs a called model
    return clone


def _one_by_one(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """The calibration images as the LiteRT converter asks for them: one batch of one."""
    for image in images:
        yield [image[None].astype("float32")]


def _add_onnx_labels(path: Path, class_names: tuple[str, ...]) -> None:
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = labels.METADATA_KEY, json.dumps(list(class_names))
    onnx.save(model, str(path))
