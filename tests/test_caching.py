"""Training on the frozen part's cached outputs is training the full model, only faster."""

import keras
import numpy as np
import pytest

from src.finetune.caching import cached_outputs, split_frozen
from src.finetune.model import build_model, compile_for_training, load_checkpoint, unfreeze_top
from src.finetune.training import as_dataset, cached_training
from tests.test_model import brief_train, tiny_split


def fresh(unfreeze: int | None, image_size: int = 32) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model(weights=None, dropout=0.3, image_size=image_size)
    if unfreeze is not None:
        unfreeze_top(model, unfreeze)
    return model


@pytest.mark.parametrize(
    ("unfreeze", "image_size", "cached_shapes"),
    [
        (None, 32, [(1280,)]),  # phase 1: the pooled features
        (40, 32, [(1, 1, 1152), (1, 1, 1152), (1, 1, 192)]),  # residual input included
        (40, 64, [(1, 1, 1152), (2, 2, 1152), (2, 2, 192)]),
    ],
)
def test_trainable_part_on_cached_outputs_equals_the_full_model(
    unfreeze, image_size, cached_shapes
):
    model = fresh(unfreeze, image_size)
    parts = split_frozen(model)
    split = tiny_split(n=8)
    cached = cached_outputs(parts.frozen, as_dataset(split, 4))
    assert [c.shape[1:] for c in cached] == cached_shapes
    np.testing.assert_allclose(
        parts.trainable.predict(list(cached), verbose=0),
        model.predict(as_dataset(split, 4), verbose=0),
        atol=1e-6,
    )
    shared = {id(v) for v in parts.trainable.trainable_weights}
    assert shared == {id(v) for v in model.trainable_weights}, "the same variables train"
    assert parts.bytes_per_image() == sum(4 * int(np.prod(s)) for s in cached_shapes)


def run_phase(trainable, splits, lr=1e-3):
    compile_for_training(trainable, lr)
    return brief_train(trainable, *splits, epochs=2)


@pytest.mark.parametrize("unfreeze", [None, 40])
def test_cached_training_matches_streaming_and_saves_the_full_model(unfreeze, tmp_path):
    splits = (tiny_split(n=40), tiny_split(n=20, seed=1))
    streamed_model = fresh(unfreeze)
    streamed = run_phase(streamed_model, splits)

    model = fresh(unfreeze)
    trainable, cached_splits = cached_training(model, splits, budget_gb=1.0)
    assert trainable is not model
    cached = run_phase(trainable, cached_splits)

    np.testing.assert_allclose(cached["loss"], streamed["loss"], rtol=1e-3)
    np.testing.assert_allclose(cached["val_accuracy"], streamed["val_accuracy"], atol=0.05)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = load_checkpoint(path, rerun="phase1_extract")
    x = splits[1].images.astype("float32")
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), streamed_model.predict(x, verbose=0), atol=1e-3
    )


def test_outputs_over_the_budget_stream_through_the_whole_model():
    model = fresh(40)
    splits = (tiny_split(n=10), tiny_split(n=10, seed=1))
    trainable, same = cached_training(model, splits, budget_gb=1e-6)
    assert trainable is model and same == splits


@pytest.mark.parametrize(("image_size", "batch"), [(32, 512), (64, 128), (224, 16)])
def test_the_frozen_part_runs_in_batches_sized_to_the_image_area(image_size, batch):
    assert split_frozen(fresh(None, image_size)).inference_batch_size() == batch
