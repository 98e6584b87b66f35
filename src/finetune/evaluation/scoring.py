"""Test-set scores of a checkpoint, with or without test-time augmentation (TTA).

TTA averages the class probabilities of the plain test images and of ``evaluate.tta``
fixed variants of them: the mirror image first, then shifts by a few pixels, the way fastai's
``tta`` and timm's test-time pooling do; with ``evaluate.tta_flip: false`` shifts only, since
a mirrored digit or letter is another shape. The variants are deterministic, so the numbers
repeat.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from src.finetune.data.splits import Split
from src.finetune.evaluation.metrics import Scores
from src.finetune.training.batches import batches, inputs_only

EVAL_BATCH_SIZE = 256
View = Callable[[tf.Tensor], tf.Tensor]


def score(model: keras.Model, test: Split, tta: int = 0, flip: bool = True) -> Scores:
    """Loss, accuracy and predicted classes; with ``tta`` extra views (mirrored ones among
    them if ``flip``), of their average."""
    dataset = inputs_only(batches(test, EVAL_BATCH_SIZE))
    probabilities = model.predict(dataset, verbose=0)
    for view in tta_views(test.images.shape[1:3], flip)[:tta]:
        probabilities += model.predict(dataset.map(view), verbose=0)
    probabilities /= 1 + tta
    one_hot = keras.utils.to_categorical(test.labels, test.classes)
    loss = keras.losses.categorical_crossentropy(one_hot, probabilities)
    accuracy = np.mean(probabilities.argmax(axis=1) == test.labels)
    return Scores(float(np.mean(loss)), float(accuracy), probabilities)


def tta_views(size: tuple[int, int], flip: bool = True) -> list[View]:
    """The variants TTA adds, in order: flipped, then shifted by 1/16 of the image each way
    (mirrored at the border), then flipped and shifted; without ``flip``, the shifts alone."""
    step = max(1, round(min(size) / 16))
    shifts = [(0, step), (0, -step), (step, 0), (-step, 0)]
    plain = [_shift(dy, dx) for dy, dx in shifts]
    if not flip:
        return plain
    flipped = [_then_flip(_shift(dy, dx)) for dy, dx in shifts[:3]]
    return [tf.image.flip_left_right, *plain, *flipped]


def _shift(dy: int, dx: int) -> View:
    def shifted(images: tf.Tensor) -> tf.Tensor:
        height, width = images.shape[1], images.shape[2]
        pad = [[0, 0], [abs(dy), abs(dy)], [abs(dx), abs(dx)], [0, 0]]
        padded = tf.pad(images, pad, mode="REFLECT")
        top, left = abs(dy) - dy, abs(dx) - dx
        return padded[:, top : top + height, left : left + width, :]

    return shifted


def _then_flip(view: View) -> View:
    return lambda images: tf.image.flip_left_right(view(images))
