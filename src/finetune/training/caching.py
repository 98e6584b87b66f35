"""Run the frozen part of the network once and train the rest on its cached outputs.

Everything below the lowest layer a phase trains is frozen and runs in inference mode: its
output for an image does not change from epoch to epoch. Computing it once instead of every
epoch is where most of the training time goes.

- Phase 1: the whole base is frozen, so the cache holds the pooled features (1,280 numbers
  per image) and only Dropout -> Dense trains.
- Phase 2: the cache holds every tensor that the frozen bottom of the base hands to its
  trainable top, residual inputs included, and the top trains on them. The network is cut
  below the lowest layer of ``phase2.unfreeze_last``: with gradual unfreezing, blocks of
  the top wait frozen until their epoch comes, and the cache stays right at every step.
- With augmentation, an image's output changes every time it is augmented: the cache then
  holds ``train.cached_views`` augmented views of each training image, and epoch ``e``
  trains on view ``e mod views``.

The trainable part shares its layers with the full model, so training it trains the full
model, which is then saved as usual: the checkpoint cannot tell how it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from src.finetune.data.splits import Split
from src.finetune.model.network import (
    BASE_NAME,
    InferenceMode,
    apply_head,
    base_of,
    image_input,
    resize_layer,
)
from src.finetune.training.augment import Augmentation
from src.finetune.training.batches import batches, inputs_only

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
    """Cut ``model`` below its lowest trainable layer (see module docstring)."""
    base = base_of(model)
    first = next(
        (i for i, layer in enumerate(base.layers) if layer.trainable_weights), len(base.layers)
    )
    if first == len(base.layers):
        return _cut_above_base(model)
    return _cut_inside_base(model, base, first)


def _cut_above_base(model: keras.Model) -> NetworkCut:
    frozen = keras.Model(model.inputs, model.get_layer("avg_pool").output, name="frozen")
    features = keras.Input(shape=frozen.outputs[0].shape[1:], name="pooled_features")
    x = model.get_layer("head_dropout")(features)
    trainable = keras.Model(features, model.get_layer("probs")(x), name="head")
    return NetworkCut(frozen, trainable)


def _cut_inside_base(model: keras.Model, base: keras.Model, first: int) -> NetworkCut:
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
    return NetworkCut(frozen, keras.Model(inputs, outputs, name="trainable"))


def frozen_outputs(frozen: keras.Model, batched: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """The frozen part's outputs, computed batch by batch, once.

    Every image on every worker of a multi-worker cluster (no sharding): each worker
    trains on its own copy of the cache, in the order of the labels.
    """
    whole = tf.data.Options()
    whole.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    outputs = frozen.predict(inputs_only(batched).with_options(whole), verbose=0)
    return tuple(outputs) if isinstance(outputs, list | tuple) else (outputs,)


def cached_split(cut: NetworkCut, split: Split) -> Split:
    """The frozen part's outputs for ``split``, with its labels."""
    outputs = frozen_outputs(cut.frozen, batches(split, cut.inference_batch_size()))
    return Split(_as_inputs(outputs), split.labels, split.classes)


def _as_inputs(outputs: tuple[np.ndarray, ...]) -> np.ndarray | tuple[np.ndarray, ...]:
    """One array for a trainable part with one input (phase 1's head), else the tuple: the
    structure the part's inputs have, so Keras gets what it expects."""
    return outputs[0] if len(outputs) == 1 else outputs


def cached_views(cut: NetworkCut, split: Split, augmentation: Augmentation, views: int) -> Split:
    """``views`` augmented views of every image through the frozen part, stacked view after
    view; view ``v`` is augmented as epoch ``v`` would be. Labels too, when MixUp or CutMix
    blend them."""
    parts: list[tuple[np.ndarray, ...]] = []
    labels: list[np.ndarray] = []
    augmented = batches(split, cut.inference_batch_size(), augmentation=augmentation)
    for view in range(views):
        augmentation.reseed(view)
        parts.append(frozen_outputs(cut.frozen, augmented))
        if augmentation.params.mixes_labels:
            augmentation.reseed(view)  # the same draws again, for the labels they blended
            labels.append(np.concatenate([y.numpy() for _, y in augmented]))
        else:
            labels.append(split.labels)
    stacked = tuple(np.concatenate(tensors) for tensors in zip(*parts, strict=True))
    return Split(_as_inputs(stacked), np.concatenate(labels), split.classes)
