"""Test-set scores, with and without test-time augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from src.finetune.evaluation.scoring import score, tta_views
from src.finetune.params import MAX_TTA_VIEWS, SHIFTED_VIEWS
from tests.support.training import fresh_model, tiny_split


def test_tta_views_are_the_mirror_image_then_shifts_mirrored_at_the_border():
    images = tf.reshape(tf.range(2 * 32 * 32 * 3, dtype=tf.float32), (2, 32, 32, 3))
    views = tta_views((32, 32))
    assert len(views) == MAX_TTA_VIEWS
    np.testing.assert_array_equal(views[0](images), images[:, :, ::-1])
    right = views[1](images).numpy()
    np.testing.assert_array_equal(right[:, :, 2:], images[:, :, :-2])  # moved right by 2 px
    np.testing.assert_array_equal(right[:, :, 0], images[:, :, 2])  # the border mirrored
    assert all(view(images).shape == images.shape for view in views)
    assert len({view(images).numpy().tobytes() for view in views}) == MAX_TTA_VIEWS


def test_without_flip_the_views_are_the_shifts_alone():
    """For digits and text, whose mirror image is another shape (evaluate.tta_flip: false)."""
    images = tf.reshape(tf.range(2 * 32 * 32 * 3, dtype=tf.float32), (2, 32, 32, 3))
    shifted = tta_views((32, 32), flip=False)
    assert len(shifted) == SHIFTED_VIEWS
    with_flip = [view(images).numpy() for view in tta_views((32, 32))[1 : 1 + SHIFTED_VIEWS]]
    for view, same in zip(shifted, with_flip, strict=True):
        np.testing.assert_array_equal(view(images), same)
    mirrored = images[:, :, ::-1].numpy()
    assert not any(np.array_equal(view(images), mirrored) for view in shifted)


def test_tta_averages_the_plain_and_extra_views_probabilities():
    model, test = fresh_model(dropout=0.3), tiny_split(n=12)
    images = test.images.astype("float32")
    plain = model.predict(images, verbose=0)
    flipped = model.predict(images[:, :, ::-1], verbose=0)
    averaged = (plain + flipped) / 2
    scores = score(model, test, tta=1)
    np.testing.assert_array_equal(scores.predictions, averaged.argmax(axis=1))
    assert scores.accuracy == pytest.approx(np.mean(averaged.argmax(axis=1) == test.labels))
    expected_loss = -np.mean(np.log(averaged[np.arange(12), test.labels]))
    assert scores.loss == pytest.approx(expected_loss, rel=1e-5)
    assert score(model, test).predictions.tolist() == plain.argmax(axis=1).tolist()
