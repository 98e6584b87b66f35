"""Training on the frozen part's cached outputs is training the full model, only faster."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from src.finetune.model.checkpoints import load_checkpoint
from src.finetune.model.cut import cut_below_trainable
from src.finetune.training.batches import batches
from src.finetune.training.caching import frozen_outputs
from src.finetune.training.loop import training_inputs
from tests.support.training import (
    augment,
    brief_train,
    fresh_model,
    tiny_plan,
    tiny_split,
    unfreeze,
)


def fresh(unfrozen: int | None, image_size: int = 32) -> keras.Model:
    model = fresh_model(dropout=0.3, image_size=image_size)
    if unfrozen is not None:
        unfreeze(model, unfrozen)
    return model


@pytest.mark.parametrize(
    ("unfreeze", "image_size", "cached_shapes"),
    [
        (None, 32, [(32,)]),  # phase 1: the pooled features
        (12, 32, [(8, 8, 16), (8, 8, 16)]),  # inside block2: its residual input included
        (12, 64, [(16, 16, 16), (16, 16, 16)]),
    ],
)
def test_trainable_part_on_cached_outputs_equals_the_full_model(
    unfreeze, image_size, cached_shapes
):
    model = fresh(unfreeze, image_size)
    cut = cut_below_trainable(model)
    split = tiny_split(n=8)
    cached = frozen_outputs(cut.frozen, batches(split, 4))
    assert [c.shape[1:] for c in cached] == cached_shapes
    np.testing.assert_allclose(
        cut.trainable.predict(list(cached), verbose=0),
        model.predict(batches(split, 4).map(lambda x, _: x), verbose=0),
        atol=1e-6,
    )
    shared = {id(v) for v in cut.trainable.trainable_weights}
    assert shared == {id(v) for v in model.trainable_weights}, "the same variables train"
    assert cut.bytes_per_image() == sum(4 * int(np.prod(s)) for s in cached_shapes)


@pytest.mark.parametrize("unfreeze", [None, 12])
def test_cached_training_matches_streaming_and_saves_the_full_model(unfreeze, tmp_path):
    splits = (tiny_split(n=40), tiny_split(n=20, seed=1))
    phase = {"phase": "phase2", "unfreeze_last": unfreeze} if unfreeze else {}
    streamed_model = fresh_model(dropout=0.3)
    streamed = brief_train(streamed_model, splits, epochs=2, cache=False, **phase)
    model = fresh_model(dropout=0.3)
    cached = brief_train(model, splits, epochs=2, cache=True, cache_budget_gb=1.0, **phase)
    assert "cached outputs" in cached.inputs

    np.testing.assert_allclose(cached.frame["loss"], streamed.frame["loss"], rtol=1e-3)
    np.testing.assert_allclose(
        cached.frame["val_accuracy"], streamed.frame["val_accuracy"], atol=0.05
    )
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = load_checkpoint(path, made_by="phase1_extract")
    x = splits[1].images.astype("float32")
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), streamed_model.predict(x, verbose=0), atol=1e-3
    )


def test_outputs_over_the_budget_stream_through_the_whole_model():
    model = fresh(12)
    splits = (tiny_split(n=10), tiny_split(n=10, seed=1))
    plan = tiny_plan(phase="phase2", unfreeze_last=12, cache=True, cache_budget_gb=1e-6)
    inputs = training_inputs(model, splits, plan)
    assert inputs.trainable is model
    assert (
        "streaming" in inputs.description and "train.cache_budget_gb is 1e-06" in inputs.description
    )


def test_augmentation_never_poisons_the_cache_with_one_plain_view():
    """With augmentation on, the cache holds augmented views (or the phase streams); the
    validation cache stays plain."""
    model = fresh(None)
    splits = (tiny_split(n=10), tiny_split(n=10, seed=1))
    on = augment(flip=True, crop_pad=4)
    plain = training_inputs(model, splits, tiny_plan(cache=True, cache_budget_gb=1.0))
    views = training_inputs(
        model, splits, tiny_plan(cache=True, cache_budget_gb=1.0, augment=on, cached_views=3)
    )
    streamed = training_inputs(
        model, splits, tiny_plan(cache=True, cache_budget_gb=1.0, augment=on, cached_views=0)
    )
    assert "3 augmented views" in views.description
    assert "streaming" in streamed.description and streamed.trainable is model

    def features(inputs, epoch):
        for callback in inputs.per_epoch:
            callback.on_epoch_begin(epoch)
        return np.concatenate([tf.nest.flatten(x)[0].numpy() for x, _ in inputs.train])

    unaugmented = np.sort(features(plain, 0), axis=0)
    per_view = [np.sort(features(views, epoch), axis=0) for epoch in range(4)]
    assert not np.allclose(per_view[0], unaugmented), "augmented, not the plain features"
    assert not np.allclose(per_view[0], per_view[1]), "each epoch its own view"
    np.testing.assert_array_equal(per_view[3], per_view[0])  # epoch 3 cycles back to view 0
    for ours, theirs in zip(views.validation, plain.validation, strict=True):
        np.testing.assert_array_equal(tf.nest.flatten(ours)[0], tf.nest.flatten(theirs)[0])


@pytest.mark.parametrize(("image_size", "batch"), [(32, 512), (64, 128), (224, 16)])
def test_the_frozen_part_runs_in_batches_sized_to_the_image_area(image_size, batch):
    assert cut_below_trainable(fresh(None, image_size)).inference_batch_size() == batch


def test_the_cut_keeps_every_layer_that_trains_above_it():
    model = fresh(12)
    layers = model.get_layer("base").layer.layers
    first = next(i for i, layer in enumerate(layers) if layer.trainable_weights)
    cut = cut_below_trainable(model)
    above = cut.trainable.get_layer("base").layer.layers
    trains = [layer.name for layer in layers[first:] if layer.trainable_weights]
    assert trains and {layer.name for layer in above} >= set(trains)
