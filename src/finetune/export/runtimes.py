"""A trained model in the runtime its format needs, behind one small interface.

``src.predict`` and the export stage use it alike: a ``.keras`` checkpoint runs in Keras, a
SavedModel folder in TensorFlow, ``.onnx`` in ONNX Runtime, ``.tflite`` in the LiteRT
interpreter. Each takes float32 images of raw 0-255 pixels and returns one row of class
probabilities per image. The ONNX and LiteRT runtimes do not import TensorFlow.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src.finetune.entrypoint import LITERT_NOTICES, native_notices_filtered
from src.finetune.errors import PipelineError, first_line
from src.finetune.model import labels


class Runtime(ABC):
    """One loaded model; ``input_shape`` is an image's (height, width, channels)."""

    title: str  # the runtime's name, for messages
    path: Path | None = None  # the file it runs, for messages
    input_shape: tuple[int, ...]
    outputs: int

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) float32 rows for (N, H, W, C) float32 images; a file that opened but
        does not run (damaged, or edited after the export) is one line naming it."""
        try:
            return self.run(images)
        except PipelineError:
            raise
        except Exception as error:  # every runtime raises its own kinds (RuntimeError, Fail...)
            where = self.path or f"the {self.title} model"
            raise PipelineError(
                f"{where} opened but does not run in {self.title} ({first_line(error, 200)}); "
                "the file is damaged or not this pipeline's: export it again"
            ) from None

    @abstractmethod
    def run(self, images: np.ndarray) -> np.ndarray:
        """What ``predict`` returns, in the runtime's own terms."""


class KerasRuntime(Runtime):
    title = "Keras"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self.outputs = model.outputs[0].shape[-1]

    def run(self, images: np.ndarray) -> np.ndarray:
        # One compiled call per batch, without fit/predict's data pipeline around it.
        return np.asarray(self.model.predict_on_batch(images))


class SavedModelRuntime(Runtime):
    title = "SavedModel"

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        spec = next(iter(self.serve.structured_input_signature[1].values()))
        self.input_name = next(iter(self.serve.structured_input_signature[1]))
        self.input_shape = tuple(spec.shape[1:])
        self.outputs = next(iter(self.serve.structured_outputs.values())).shape[-1]

    def run(self, images: np.ndarray) -> np.ndarray:
        out = self.serve(**{self.input_name: images})
        return next(iter(out.values())).numpy()


class OnnxRuntime(Runtime):
    title = "ONNX"

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0]
        self.input_shape = tuple(self.input.shape[1:])
        self.outputs = self.session.get_outputs()[0].shape[-1]

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input.name: images})[0]

    def class_names(self) -> tuple[str, ...] | None:
        value = self.session.get_modelmeta().custom_metadata_map.get(labels.METADATA_KEY)
        return None if value is None else labels.decode(value, "the ONNX model's metadata")


class LiteRtRuntime(Runtime):
    title = "LiteRT"

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with native_notices_filtered(LITERT_NOTICES):
            self.interpreter = Interpreter(model_path=str(path))
            self.interpreter.allocate_tensors()  # where the CPU delegate says it was created
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])
        self.outputs = int(self.output["shape"][-1])
        self.batch = 0

    def run(self, images: np.ndarray) -> np.ndarray:
        if len(images) != self.batch:  # the interpreter's tensors have a fixed batch size
            self.interpreter.resize_tensor_input(
                self.input["index"], [len(images), *self.input_shape]
            )
            self.interpreter.allocate_tensors()
            self.batch = len(images)
        self.interpreter.set_tensor(self.input["index"], images)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()


@dataclass(frozen=True)
class LoadedModel:
    runtime: Runtime
    class_names: tuple[str, ...] | None


def open_model(path: Path, made_by: str = "phase2_finetune") -> LoadedModel:
    """The model at ``path`` in its runtime, with the class names it carries (None if none).

    The format is told by the name: ``.keras``, ``.onnx``, ``.tflite``, or a SavedModel folder.
    """
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return LoadedModel(_opened(SavedModelRuntime, path), labels.read_sidecar(path))
    if path.suffix == ".keras":
        from src.finetune.model.checkpoints import load_checkpoint

        runtime = KerasRuntime(load_checkpoint(path, made_by))
        runtime.path = path
        return LoadedModel(runtime, labels.read_from_archive(path))
    if not path.exists():
        raise PipelineError(f"{path} not found; give a .keras, .onnx or .tflite model")
    if path.suffix == ".onnx":
        runtime = _opened(OnnxRuntime, path)
        return LoadedModel(runtime, runtime.class_names())
    if path.suffix == ".tflite":
        return LoadedModel(_opened(LiteRtRuntime, path), labels.read_sidecar(path))
    raise PipelineError(
        f"{path}: not a model this pipeline reads; give a .keras checkpoint, an .onnx or "
        ".tflite export, or a SavedModel folder (see README: Deploy)"
    )


def _opened(kind: type[Runtime], path: Path) -> Runtime:
    try:
        runtime = kind(path)
        runtime.path = path
        return runtime
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as error:
        raise PipelineError(
            f"{path} is not a readable {kind.title} model ({first_line(error, 200)})"
        ) from None
    except Exception as error:  # onnxruntime raises its own Fail / InvalidGraph types
        if type(error).__module__.startswith("onnxruntime"):
            raise PipelineError(
                f"{path} is not a readable ONNX model ({first_line(error, 200)})"
            ) from None
        raise
