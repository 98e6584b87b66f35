"""``tf.data`` pipelines that feed the model: batches of float pixels 0-255 and one-hot labels.

The arrays stay as they are (uint8 images, memory-mapped from the prepared splits, or the
cached outputs of the frozen part); each batch is gathered by index, converted and
prefetched, so neither a whole split nor a float32 copy of it is ever made. Training batches
are shuffled, seeded, in a new order every epoch, and augmented when asked to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from src.finetune.data.prepared import Rows
from src.finetune.data.splits import Split
from src.finetune.training.augment import Augmentation


@dataclass(frozen=True)
class Cached:
    """What the frozen part made of a split's images (see ``caching``): one float array per
    tensor it hands on (``inputs``: one array, or a tuple when it hands on several), with
    their labels, which MixUp and CutMix may have blended (one row of class weights per
    image). Batched like a split."""

    inputs: np.ndarray | tuple[np.ndarray, ...]
    labels: np.ndarray
    classes: int

    def __len__(self) -> int:
        return len(self.labels)


def batches(
    split: Split | Cached,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    augmentation: Augmentation | None = None,
    views: int = 1,
    current_view: tf.Variable | None = None,
) -> tf.data.Dataset:
    """The split (its images, or the frozen part's features of them) in batches of
    ``(inputs, one-hot or mixed labels)``.

    ``views`` > 1: the split stacks that many augmented views of the same images one after
    the other (see ``caching``), and ``current_view`` holds the one this epoch trains on.
    """
    images = tf.nest.map_structure(_gatherer, split.inputs)
    labels = tf.convert_to_tensor(split.labels)
    count = len(split) // views
    indices = tf.data.Dataset.range(count)
    if shuffle_seed is not None:
        indices = indices.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size)
    if current_view is not None:
        indices = indices.map(lambda i: i + tf.cast(current_view, tf.int64) * count)

    def gather(i: tf.Tensor) -> tuple[Any, tf.Tensor]:
        picked = tf.nest.map_structure(lambda take: take(i), images)
        return to_model_inputs(picked, tf.gather(labels, i), split.classes)

    stateful_map = augmentation is not None or current_view is not None
    dataset = indices.map(gather, num_parallel_calls=_gather_parallelism(stateful_map))
    if augmentation is not None:
        # In order, one batch after the other: the random stream is reproducible only so.
        dataset = dataset.enumerate().map(lambda b, xy: augmentation(*xy, b))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _gather_parallelism(stateful_map: bool) -> int | None:
    """Batches gathered in parallel, except in a pipeline with a stateful map (the seeded
    augmentation, or the cached view an epoch reads from a variable).

    Under op determinism (``train.deterministic``, the default), tf.data runs every map of
    such a pipeline in order: its ``make_deterministic`` rewrite turns a parallel map
    sequential, and logs a C++ error line that is none (``NodeDef mentions attribute
    use_unbounded_threadpool``). Asking for the sequential map gives the same batches at the
    same speed and a clean log; without determinism, the stateful map sets the pace anyway.
    """
    return None if stateful_map else tf.data.AUTOTUNE


def _gatherer(array: np.ndarray) -> Callable[[tf.Tensor], tf.Tensor]:
    """How a batch's rows are taken from ``array``: read from disk for a memory-mapped file
    (only the batch is ever in memory, see ``data.Rows``), from a tensor otherwise."""
    rows = Rows.of(array)
    if rows is not None:

        def read(indices: tf.Tensor) -> tf.Tensor:
            batch = tf.numpy_function(
                rows.read, [indices], tf.as_dtype(array.dtype), stateful=False
            )
            batch.set_shape([None, *array.shape[1:]])
            return batch

        return read
    tensor = tf.convert_to_tensor(array)
    return lambda indices: tf.gather(tensor, indices)


def to_model_inputs(images: Any, labels: tf.Tensor, classes: int) -> tuple[Any, tf.Tensor]:
    """float32 inputs; integer labels one-hot, labels already mixed (floats) as they are."""
    floats = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), images)
    if labels.dtype.is_floating:
        return floats, labels
    return floats, tf.one_hot(labels, classes)


def inputs_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The inputs of a batched dataset, for ``predict``."""
    return dataset.map(lambda inputs, _: inputs)
