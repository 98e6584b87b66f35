"""The model cut where training starts: the frozen part below the lowest layer a phase
trains, and the trainable part above it, which shares the model's layers.

Everything below the lowest trainable layer is frozen and runs in inference mode, so its
output for an image never changes: ``training.caching`` runs it once and trains the top on
what it gave. Phase 1 cuts above the base (the pooled features); phase 2 inside it, handing
on every tensor the top reads from below, residual inputs included. Found through Keras's
public graph (each layer's ``input`` and ``output``), not its internals.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from src.finetune.model.network import (
    BASE_NAME,
    HEAD_NAMES,
    InferenceMode,
    apply_head,
    base_of,
    image_input,
    resize_layer,
)

BYTES_PER_FLOAT = 4
# Inference has no batch statistics, so the batch size is free; larger batches run the frozen
# network faster (2-core CPU, 32x32: 1,630 images/s at 64, 3,230 at 512). Scaled down with
# the image area, so activations at 224x224 stay small.
INFERENCE_PIXELS = 512 * 32 * 32


@dataclass(frozen=True)
class NetworkCut:
    """The full model cut where training starts: ``frozen`` feeds ``trainable``."""

    frozen: keras.Model
    trainable: keras.Model

    def inference_batch_size(self) -> int:
        height, width = self.frozen.inputs[0].shape[1:3]
        resize = resize_layer(self.frozen)
        if resize is not None:
            height, width = resize.output.shape[1:3]
        return max(16, INFERENCE_PIXELS // (height * width))

    def bytes_per_image(self) -> int:
        return sum(int(np.prod(t.shape[1:])) * BYTES_PER_FLOAT for t in self.frozen.outputs)


def cut_below_trainable(model: keras.Model) -> NetworkCut:
    """Cut ``model`` below its lowest trainable layer (see the module's docstring)."""
    base = base_of(model)
    first = next(
        (i for i, layer in enumerate(base.layers) if layer.trainable_weights), len(base.layers)
    )
    if first == len(base.layers):
        return _cut_above_base(model)
    return _cut_inside_base(model, base, first)


def _cut_above_base(model: keras.Model) -> NetworkCut:
    """The base and the pooling frozen; the head's other layers train on pooled features."""
    pool, *rest = HEAD_NAMES
    frozen = keras.Model(model.inputs, model.get_layer(pool).output, name="frozen")
    x = features = keras.Input(shape=frozen.outputs[0].shape[1:], name="pooled_features")
    for name in rest:
        x = model.get_layer(name)(x)
    return NetworkCut(frozen, keras.Model(features, x, name="head"))


def _cut_inside_base(model: keras.Model, base: keras.Model, first: int) -> NetworkCut:
    top = base.layers[first:]
    made_on_top = {id(tensor) for layer in top for tensor in keras.tree.flatten(layer.output)}
    boundary, seen = [], set()
    for layer in top:
        for tensor in keras.tree.flatten(layer.input):
            if id(tensor) not in made_on_top and id(tensor) not in seen:
                seen.add(id(tensor))
                boundary.append(tensor)

    bottom = keras.Model(base.inputs, boundary, name="frozen_bottom")
    top_model = keras.Model(boundary, base.output, name="trainable_top")
    images, resized = image_input(model)
    frozen = keras.Model(images, InferenceMode(bottom, name="frozen_bottom_inference")(resized))
    inputs = [keras.Input(shape=t.shape[1:], name=f"cached_{i}") for i, t in enumerate(boundary)]
    top_layer = InferenceMode(top_model, name=BASE_NAME)
    top_layer.follow_training = model.get_layer(BASE_NAME).follow_training  # train_batchnorm
    outputs = apply_head(model, top_layer(inputs))
    return NetworkCut(frozen, keras.Model(inputs, outputs, name="trainable"))
