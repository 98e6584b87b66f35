"""Training-time augmentation: what each key turns on, that it changes each epoch's training
batches and nothing else, and that its random stream is seeded per epoch."""

import os
import subprocess
import sys

import numpy as np
import pytest

from src.finetune.training.augment import Augmentation, augmentation
from src.finetune.training.batches import batches
from src.finetune.training.loop import training_inputs
from tests.support.params import ROOT
from tests.support.training import augment, brief_train, fresh_model, tiny_plan, tiny_split

# Augmented batches through a model under op determinism, as a training stage runs them; in
# a process of its own, as determinism is for the whole process.
DETERMINISTIC_PREDICT = """
import keras, tensorflow as tf
from src.finetune.training.augment import augmentation
from src.finetune.training.batches import batches, inputs_only
from tests.support.training import augment, tiny_split
keras.utils.set_random_seed(1)
tf.config.experimental.enable_op_determinism()
augmenter = augmentation(augment(flip=True, crop_pad=2), 1, (32, 32, 3))
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
augmented = batches(tiny_split(n=40), 10, augmentation=augmenter)
view = tf.Variable(1)  # the cached view an epoch trains on, as a training phase sets it
cached_views = batches(tiny_split(n=40), 10, views=2, current_view=view)
for dataset in (augmented, cached_views):
    print(model.predict(inputs_only(dataset), verbose=0).shape)
"""

EVERY_KEY = {
    "flip": True,
    "crop_pad": 4,
    "rotation": 0.05,
    "color_jitter": 0.3,
    "randaugment": 2,
    "erasing": 0.25,
    "mixup": 0.2,
    "cutmix": 1.0,
}


def epoch_batches(augmenter: Augmentation | None, epoch: int, split=None) -> list[np.ndarray]:
    split = split or tiny_split(n=40)
    if augmenter:
        augmenter.reseed(epoch)
    return [(x.numpy(), y.numpy()) for x, y in batches(split, 10, augmentation=augmenter)]


def test_every_key_off_is_no_augmentation_at_all():
    assert augmentation(augment(), seed=0, image_shape=(32, 32, 3)) is None


@pytest.mark.parametrize(
    ("key", "value", "layers"),
    [
        ("flip", True, ["RandomFlip"]),
        ("crop_pad", 4, ["ZeroPadding2D", "RandomCrop"]),
        ("rotation", 0.1, ["RandomRotation"]),
        ("color_jitter", 0.4, ["RandomColorJitter"]),
        ("randaugment", 2, ["RandAugment"]),
        ("erasing", 0.5, ["RandomErasing"]),
    ],
)
def test_each_key_turns_on_its_keras_layer(key, value, layers):
    augmenter = augmentation(augment(**{key: value}), seed=0, image_shape=(32, 32, 3))
    assert [type(layer).__name__ for layer in augmenter.image_layers] == layers
    assert augmenter.mixers == []


def test_every_key_together_runs_in_the_input_pipeline_and_keeps_shapes_and_range():
    augmenter = augmentation(augment(**EVERY_KEY), seed=0, image_shape=(32, 32, 3))
    (images, labels), *_ = epoch_batches(augmenter, 0)
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255.5
    assert labels.shape == (10, 10)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)


def test_augmentation_changes_every_epoch_and_repeats_for_the_same_seed_and_epoch():
    plain = epoch_batches(None, 0)
    first = epoch_batches(augmentation(augment(flip=True, crop_pad=4), 7, (32, 32, 3)), 0)
    again = epoch_batches(augmentation(augment(flip=True, crop_pad=4), 7, (32, 32, 3)), 0)
    second = epoch_batches(augmentation(augment(flip=True, crop_pad=4), 7, (32, 32, 3)), 1)
    other_seed = epoch_batches(augmentation(augment(flip=True, crop_pad=4), 8, (32, 32, 3)), 0)
    assert not np.array_equal(first[0][0], plain[0][0])
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0][0], second[0][0])
    assert not np.array_equal(first[0][0], other_seed[0][0])
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, plain, strict=True)), (
        "image augmentation leaves labels alone"
    )


@pytest.mark.parametrize("mixer", ["mixup", "cutmix"])
def test_mixup_and_cutmix_blend_labels_with_the_images(mixer):
    augmenter = augmentation(augment(**{mixer: 1.0}), seed=0, image_shape=(32, 32, 3))
    images, labels = epoch_batches(augmenter, 0)[0]
    plain_images, one_hot = epoch_batches(None, 0)[0]
    assert (labels.max(axis=1) < 1).any(), "some labels are blends of two classes"
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.array_equal(images, plain_images)
    assert set(np.flatnonzero(one_hot[0])) <= set(np.flatnonzero(labels[0]))


def test_with_both_mixers_batches_alternate_between_them():
    augmenter = augmentation(augment(mixup=1.0, cutmix=1.0), seed=0, image_shape=(32, 32, 3))
    plain = epoch_batches(None, 0)
    mixed = epoch_batches(augmenter, 0)

    def pasted(batch: int) -> bool:  # CutMix copies pixels: each equals one of the batch's own
        corner, originals = mixed[batch][0][:, 0, 0], plain[batch][0][:, 0, 0]
        return all(any(np.array_equal(p, o) for o in originals) for p in corner)

    assert not pasted(0) and pasted(1) and not pasted(2)


def test_seeded_augmented_training_repeats_exactly():
    def run(**on):
        return brief_train(fresh_model(), epochs=2, augment=augment(**on)).frame

    first, second = run(flip=True, crop_pad=4, erasing=0.5), run(flip=True, crop_pad=4, erasing=0.5)
    assert first.equals(second)
    assert not np.allclose(first["loss"], run()["loss"]), "the training batches changed"


def test_validation_batches_are_never_augmented():
    splits = (tiny_split(), tiny_split(seed=1))
    plan = tiny_plan(augment=augment(**EVERY_KEY))
    inputs = training_inputs(fresh_model(), splits, plan)
    assert inputs.per_epoch, "training batches are reseeded every epoch"
    validation = np.concatenate([x.numpy() for x, _ in inputs.validation])
    np.testing.assert_array_equal(validation, splits[1].images.astype("float32"))


def test_augmented_and_cached_view_batches_under_op_determinism_log_no_cpp_error():
    """tf.data's rewrite of a parallel map in a pipeline with a stateful one logs a spurious
    ``E0000`` line; the pipeline asks for the sequential map the rewrite would run."""
    done = subprocess.run(
        [sys.executable, "-c", DETERMINISTIC_PREDICT],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(40,", "3)", "(20,", "3)"]
    assert "use_unbounded_threadpool" not in done.stderr
    assert not [line for line in done.stderr.splitlines() if "node_def_util" in line]
