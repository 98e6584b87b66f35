"""The tiny model every export test writes, its images, and its files in every format."""

import keras
import numpy as np
import pytest

from src.finetune.export.formats import Format, export_model
from tests.support.exports import NAMES


@pytest.fixture(scope="module")
def tiny():
    """Raw pixels in, per-channel Normalization (as the backbones have), softmax out; enough
    weights (a 4,096-wide dense layer) that int8 shrinks the file as it would a real model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0] * 3)(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(4096, activation="relu")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (64, 16, 16, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tiny, images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    for format in Format:
        export_model(tiny, format, folder / format.file_name, NAMES, images[:16])
    return folder
