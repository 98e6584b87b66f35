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

import keras
import numpy as np
import tensorflow as tf

from src.finetune.data.splits import Split
from src.finetune.model.cut import NetworkCut
from src.finetune.training.augment import Augmentation
from src.finetune.training.batches import Cached, batches, inputs_only


def frozen_outputs(frozen: keras.Model, batched: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """The frozen part's outputs, computed batch by batch, once.

    Every image on every worker of a multi-worker cluster (no sharding): each worker
    trains on its own copy of the cache, in the order of the labels.
    """
    whole = tf.data.Options()
    whole.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    outputs = frozen.predict(inputs_only(batched).with_options(whole), verbose=0)
    return tuple(outputs) if isinstance(outputs, list | tuple) else (outputs,)


def cached_split(cut: NetworkCut, split: Split) -> Cached:
    """The frozen part's outputs for ``split``, with its labels."""
    outputs = frozen_outputs(cut.frozen, batches(split, cut.inference_batch_size()))
    return Cached(_as_inputs(outputs), split.labels, split.classes)


def _as_inputs(outputs: tuple[np.ndarray, ...]) -> np.ndarray | tuple[np.ndarray, ...]:
    """One array for a trainable part with one input (phase 1's head), else the tuple: the
    structure the part's inputs have, so Keras gets what it expects."""
    return outputs[0] if len(outputs) == 1 else outputs


def cached_views(cut: NetworkCut, split: Split, augmentation: Augmentation, views: int) -> Cached:
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
    return Cached(_as_inputs(stacked), np.concatenate(labels), split.classes)
