"""Run the frozen part of the network once and train the rest on its cached outputs.

Everything below the first trainable layer is frozen and runs in inference mode, with no
augmentation in front of it: its output for an image is the same in every epoch. Computing
it once instead of every epoch is where most of the training time goes.

- Phase 1: the whole base is frozen, so the cache holds the pooled features (1,280 numbers
  per image) and only Dropout -> Dense trains.
- Phase 2: the cache holds every tensor that the frozen bottom of the base hands to its
  trainable top, residual inputs included, and the top trains on them.

The trainable part shares its layers with the full model, so training it trains the full
model, which is then saved as usual: the checkpoint cannot tell how it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from src.finetune.model import (
    BASE_NAME,
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
class FrozenSplit:
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


def split_frozen(model: keras.Model) -> FrozenSplit:
    """Cut ``model`` below its first trainable layer (see module docstring)."""
    base = base_of(model)
    first = next(
        (i for i, layer in enumerate(base.layers) if layer.trainable_weights), len(base.layers)
    )
    if first == len(base.layers):
        return _split_above_base(model)
    return _split_inside_base(model, base, first)


def _split_above_base(model: keras.Model) -> FrozenSplit:
    frozen = keras.Model(model.inputs, model.get_layer("avg_pool").output, name="frozen")
    features = keras.Input(shape=frozen.outputs[0].shape[1:], name="pooled_features")
    x = model.get_layer("head_dropout")(features)
    trainable = keras.Model(features, model.get_layer("probs")(x), name="head")
    return FrozenSplit(frozen, trainable)


def _split_inside_base(model: keras.Model, base: keras.Model, first: int) -> FrozenSplit:
    top = base.layers[first:]
    on_top = {id(layer) for layer in top}
    boundary, seen = [], set()
    for layer in top:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                if id(tensor._keras_history.operation) not in on_top and id(tensor) not in seen:
                    seen.add(id(tensor))
                    boundary.append(tensor)

    bottom = keras.Model(base.inputs, boundary, name="frozen_bottom")
    top_model = keras.Model(boundary, base.output, name="trainable_top")
    images, resized = image_input(model)
    frozen = keras.Model(images, InferenceMode(bottom, name="frozen_bottom_inference")(resized))
    inputs = [keras.Input(shape=t.shape[1:], name=f"cached_{i}") for i, t in enumerate(boundary)]
    outputs = apply_head(model, InferenceMode(top_model, name=BASE_NAME)(inputs))
    return FrozenSplit(frozen, keras.Model(inputs, outputs, name="trainable"))


def cached_outputs(frozen: keras.Model, batches: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """The frozen part's outputs, computed batch by batch, once."""
    outputs = frozen.predict(batches.map(lambda images, _: images), verbose=0)
    return tuple(outputs) if isinstance(outputs, list | tuple) else (outputs,)
