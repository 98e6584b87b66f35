"""The MLflow model that ``mlflow models serve`` runs: the Keras classifier, answering with
class names.

MLflow copies this file into every logged model ("models from code"), so it must stand alone:
it imports MLflow, Keras and NumPy, nothing from this project. Per image it answers the top
classes by name with their probabilities::

    {"predictions": [{"label": "7", "probability": 0.98,
                      "top": [{"label": "7", "probability": 0.98}, ...]}]}

An empty batch, a batch of the wrong image shape, or pixels that are NaN or infinite get an
HTTP 400 with one sentence, never a 200 with NaN probabilities.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# TensorFlow's C++ start-up notices (oneDNN, no CUDA driver, cuInit, CPU instructions): written
# to the process's stderr before its logging exists, they open the serving log reading like
# errors. The stages filter the same lines (src/finetune/entrypoint.py: STARTUP_NOTICES); this
# file repeats the pattern because it may import nothing of the project.
NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers|cpu_feature_guard\.cc:\d+\] This "
    r"TensorFlow binary|^To enable the following instructions: .* rebuild TensorFlow"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\] .*(kernel driver|No such file)"
)
TOP_K = 5  # classes per image unless the request's params say {"top_k": n} (the signature's
# default, which MLflow fills in; this one serves a caller that passes no params at all)


class LabelledClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        keras = import_keras_quietly()
        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        with open(context.artifacts["labels"]) as handle:
            self.class_names = json.load(handle)["class_names"]
        self.image_shape = tuple(self.model.inputs[0].shape[1:])

    # np.ndarray: MLflow then validates requests with the logged signature (the model's image
    # shape), which a type hint cannot express, and does not warn that the hint is missing.
    def predict(self, context, model_input: np.ndarray, params: dict | None = None):
        images = self.checked(np.asarray(model_input, dtype=np.float32))
        top_k = int((params or {}).get("top_k", TOP_K))
        if top_k < 1:
            refuse(f"top_k: {top_k} is not a positive number of classes")
        top_k = min(top_k, len(self.class_names))  # all of them, at most
        probabilities = np.asarray(self.model.predict_on_batch(images))
        return [self.answer(row, top_k) for row in probabilities]

    def checked(self, images: np.ndarray) -> np.ndarray:
        if images.size == 0 or len(images) == 0:
            refuse("the batch holds no image; send at least one")
        if images.shape[1:] != self.image_shape:
            refuse(
                f"images of shape {images.shape[1:]} given; this model takes {self.image_shape} "
                "(height, width, channels) of raw 0-255 pixels"
            )
        if not np.isfinite(images).all():
            bad = int(np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(1))[0])
            refuse(f"image {bad} holds NaN or infinite pixels; send values in 0-255")
        return images

    def answer(self, row: np.ndarray, top_k: int) -> dict:
        order = np.argsort(-row, kind="stable")[:top_k]
        top = [{"label": self.class_names[i], "probability": float(row[i])} for i in order]
        return {"label": top[0]["label"], "probability": top[0]["probability"], "top": top}


def import_keras_quietly():
    """Keras, with TensorFlow imported (and its devices probed) while stderr, the file
    descriptor, is captured; every captured line but the start-up notices is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe, now
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not NOTICES.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
    return keras


def refuse(message: str) -> None:
    """An HTTP 400 answer from ``mlflow models serve``."""
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


# Models from code: MLflow imports this file when it loads the model and takes the instance
# set here; that is the only reason it acts on import.
mlflow.models.set_model(LabelledClassifier())
