"""Keras models as MLflow 3 logged models of the comparison run, with their accuracy, the
class names they answer with, and what the later stages attach to them."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

log = logging.getLogger(__name__)
SERVED_MODEL = Path(__file__).with_name("served_model.py")  # read by MLflow, not imported
TOP_K = 5  # classes per image the served model answers with, unless a request says top_k


def log_model(
    client: MlflowClient,
    run_id: str,
    model: Any,
    name: str,
    class_names: tuple[str, ...],
    register_as: str | None,
) -> None:
    """Log ``model`` to run ``run_id`` as a model that answers with class names (see
    ``served_model``), the names also in its metadata; optionally register it as a new version
    of ``register_as``."""
    # Imported here: only the training stages, which load TensorFlow anyway, log models.
    import keras
    import mlflow
    import mlflow.pyfunc
    import tensorflow as tf
    from mlflow.models import Model

    # Model.log uses the global store and experiment: the run's.
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    # Named requirements spare MLflow a subprocess that reloads the model to infer them.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    with tempfile.TemporaryDirectory(prefix="mlflow-model-") as scratch:
        artifacts = {"keras_model": f"{scratch}/model.keras", "labels": f"{scratch}/labels.json"}
        model.save(artifacts["keras_model"])
        Path(artifacts["labels"]).write_text(json.dumps({"class_names": list(class_names)}))
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            registered_model_name=register_as,
            await_registration_for=0,
            metadata={"class_names": list(class_names)},
            python_model=str(SERVED_MODEL),
            artifacts=artifacts,
            signature=signature(model),
            input_example=input_example(model),  # MLflow checks that it is answered
            pip_requirements=requirements,
        )
    log.info("logged %s as MLflow model %s (models:/%s)", name, info.model_id, info.model_id)
    if register_as:
        log.info(
            "registered %s as model %s version %s", name, register_as, info.registered_model_version
        )


def signature(model: Any) -> ModelSignature:
    """Images in, with the model's own shape (batch size left free); ``top_k`` a param."""
    tensor = model.inputs[0]
    shape = (-1, *(-1 if d is None else d for d in tensor.shape[1:]))
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(tensor.dtype), shape)]),
        params=ParamSchema([ParamSpec("top_k", "long", TOP_K)]),
    )


def input_example(model: Any) -> np.ndarray:
    """One image of the model's input shape (mid-grey pixels), what a request sends."""
    tensor = model.inputs[0]
    shape = (1, *(32 if d is None else d for d in tensor.shape[1:]))
    return np.full(shape, 127.0, dtype=np.dtype(tensor.dtype))


def link_model_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, Mapping[str, float]]
) -> None:
    """Log ``{model name: {key: value}}`` to the run, each value linked to the logged model of
    that name, so the model's page shows its accuracy."""
    ids = logged_models(client, run_id)
    now = int(time.time() * 1000)
    for name, values in metrics.items():
        if name in ids:
            batch = [Metric(k, float(v), now, 0, model_id=ids[name]) for k, v in values.items()]
            client.log_batch(run_id, metrics=batch)


def logged_models(client: MlflowClient, run_id: str) -> dict[str, str]:
    """The run's logged models: ``{name: model id}``."""
    outputs = client.get_run(run_id).outputs
    return {
        client.get_logged_model(output.model_id).name: output.model_id
        for output in (outputs.model_outputs if outputs else [])
    }


def attach_to_model(client: MlflowClient, run_id: str, name: str, paths: Sequence[Path]) -> None:
    """Files and folders to the artifacts of the run's logged model ``name``, if it has one
    (``mlflow.log_models: false`` logs none)."""
    model_id = logged_models(client, run_id).get(name)
    if model_id is None:
        return
    for path in paths:
        if path.is_dir():
            client.log_model_artifacts(model_id, str(path), path.name)
        elif path.is_file():
            client.log_model_artifact(model_id, str(path))
