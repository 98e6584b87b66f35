"""Keras models as MLflow 3 logged models of the comparison run, with their accuracy."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

log = logging.getLogger(__name__)


def log_model(
    client: MlflowClient,
    run_id: str,
    model: Any,
    name: str,
    class_names: tuple[str, ...],
    register_as: str | None,
) -> None:
    """Log ``model`` to run ``run_id``, its class names in its metadata; optionally register
    it as a new version of ``register_as``."""
    # Imported here: only the training stages, which load TensorFlow anyway, log models.
    import keras
    import mlflow
    import mlflow.keras
    import tensorflow as tf
    from mlflow.models import Model

    # Model.log uses the global store and experiment: the run's.
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    # Named requirements spare MLflow a subprocess that reloads the model to infer them.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    info = Model.log(
        artifact_path=None,
        name=name,
        flavor=mlflow.keras,
        run_id=run_id,
        registered_model_name=register_as,
        await_registration_for=0,
        metadata={"class_names": list(class_names)},
        model=model,
        signature=signature(model),
        pip_requirements=requirements,
    )
    log.info("logged %s as MLflow model %s (models:/%s)", name, info.model_id, info.model_id)
    if register_as:
        log.info(
            "registered %s as model %s version %s", name, register_as, info.registered_model_version
        )


def signature(model: Any) -> ModelSignature:
    """Tensor in, tensor out, with the model's own shapes (batch size left free)."""

    def spec(tensor: Any) -> Schema:
        shape = (-1, *(-1 if d is None else d for d in tensor.shape[1:]))
        return Schema([TensorSpec(np.dtype(tensor.dtype), shape)])

    return ModelSignature(inputs=spec(model.inputs[0]), outputs=spec(model.outputs[0]))


def link_model_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, Mapping[str, float]]
) -> None:
    """Log ``{model name: {key: value}}`` to the run, each value linked to the logged model of
    that name, so the model's page shows its accuracy."""
    outputs = client.get_run(run_id).outputs
    ids = {
        client.get_logged_model(output.model_id).name: output.model_id
        for output in (outputs.model_outputs if outputs else [])
    }
    now = int(time.time() * 1000)
    for name, values in metrics.items():
        if name in ids:
            batch = [Metric(k, float(v), now, 0, model_id=ids[name]) for k, v in values.items()]
            client.log_batch(run_id, metrics=batch)
