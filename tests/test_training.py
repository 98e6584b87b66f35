import math

import keras
import numpy as np
import pandas as pd
import pytest

from src.finetune.errors import PipelineError
from src.finetune.history import HISTORY_COLUMNS
from src.finetune.model import build_model, compile_for_training
from src.finetune.training import _fail_on_divergence, as_dataset
from tests.test_model import brief_train, tiny_split


def test_batches_are_float_pixels_and_one_hot_labels():
    images, labels = next(iter(as_dataset(tiny_split(), batch_size=8)))
    assert images.dtype.name == "float32" and images.shape == (8, 32, 32, 3)
    assert float(images.numpy().max()) > 1.0, "raw 0-255 pixels, no normalisation"
    assert labels.shape == (8, 10) and labels.numpy().sum(axis=1).tolist() == [1.0] * 8


def test_seeded_shuffle_reorders_each_epoch_but_repeats_across_runs():
    split = tiny_split()

    def epochs(seed):
        dataset = as_dataset(split, batch_size=20, shuffle_seed=seed)
        return [next(iter(dataset))[1].numpy().argmax(1).tolist() for _ in range(2)]

    keras.utils.set_random_seed(1)
    first = epochs(5)
    keras.utils.set_random_seed(1)
    assert epochs(5) == first
    assert first[0] != first[1]


def test_train_continues_the_epoch_count_and_reports_each_epoch_live():
    keras.utils.set_random_seed(0)
    model = build_model(weights=None, dropout=0.0, image_size=32)
    compile_for_training(model, 1e-3)
    seen = []
    history = brief_train(
        model,
        tiny_split(),
        tiny_split(seed=1),
        epochs=2,
        initial_epoch=3,
        on_epoch_end=lambda epoch, logs: seen.append((epoch, sorted(logs))),
        lr_param="phase2.lr",
    )
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [4, 5]
    assert [epoch for epoch, _ in seen] == [4, 5]
    assert set(HISTORY_COLUMNS[1:]) <= set(seen[0][1])
    assert history.drop(columns="epoch").map(math.isfinite).all().all()


def test_non_finite_loss_stops_with_the_lr_to_lower():
    frame = pd.DataFrame({"epoch": [1, 2], "loss": [2.3, float("nan")]})
    with pytest.raises(PipelineError, match=r"not finite at epoch 2; lower phase1\.lr"):
        _fail_on_divergence(frame, "phase1.lr")
    _fail_on_divergence(frame.iloc[:1], "phase1.lr")


def test_numpy_is_not_copied_to_float_for_the_whole_split():
    split = tiny_split(n=50)
    dataset = as_dataset(split, batch_size=10)
    assert dataset.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    assert split.images.dtype == np.uint8
