"""Every backbone: its layer count and blocks, its own preprocessing inside the model (raw
0-255 pixels in, nothing normalised twice), BatchNormalization frozen and in inference mode,
both caches equal to the uncached network, and the offline hint naming its weights file."""

import contextlib

import keras
import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.model.backbones import BACKBONES
from src.finetune.model.cut import cut_below_trainable
from src.finetune.model.network import (
    InferenceMode,
    backbone_of,
    base_blocks,
    base_of,
    build_model,
    image_input,
    training_groups,
)
from src.finetune.training.caching import cached_split
from tests.support.training import fresh_model, tiny_split, unfreeze

# What Keras's own ``preprocess_input`` does to pixels outside the model, for each: nothing
# for the networks that scale their inputs themselves (their first layers, inside the base)
KERAS_PREPROCESSING = {
    "efficientnetv2b0": keras.applications.efficientnet_v2.preprocess_input,
    "efficientnetv2b3": keras.applications.efficientnet_v2.preprocess_input,
    "efficientnetv2s": keras.applications.efficientnet_v2.preprocess_input,
    "efficientnetb0": keras.applications.efficientnet.preprocess_input,
    "resnet50v2": keras.applications.resnet_v2.preprocess_input,
    "mobilenetv3large": keras.applications.mobilenet_v3.preprocess_input,
    "convnexttiny": keras.applications.convnext.preprocess_input,
    "densenet121": keras.applications.densenet.preprocess_input,
    # Google's EfficientNet-Lite and TinyNet: (x - 127) / 128 and x / 127.5 - 1, inside
    **dict.fromkeys(
        ("efficientnetlite0", "efficientnetlite1", "efficientnetlite2", "tinynet"), lambda x: x
    ),
}


@pytest.fixture(scope="module", params=list(BACKBONES))
def model(request) -> keras.Model:
    return fresh_model(dropout=0.0, backbone=request.param)


def test_every_backbone_is_covered():
    assert set(KERAS_PREPROCESSING) == set(BACKBONES)
    assert {"efficientnetv2b0", "resnet50v2", "mobilenetv3large", "densenet121"} <= set(BACKBONES)


def test_layer_count_and_name_are_the_networks(model):
    backbone = backbone_of(model)
    assert len(base_of(model).layers) == backbone.layers
    assert model.name == f"{backbone.name}_classifier"


def test_raw_pixels_go_in_and_nothing_is_normalised_twice(model):
    """What the base receives is what Keras's preprocessing would give it; the base itself
    starts with its own scaling exactly when Keras's preprocessing does nothing."""
    backbone = backbone_of(model)
    pixels = tiny_split(n=2).images.astype("float32")
    received = keras.Model(*image_input(model))(pixels)
    expected = KERAS_PREPROCESSING[backbone.name](pixels.copy())
    np.testing.assert_allclose(received, expected, rtol=1e-6, atol=1e-6)
    first = {type(layer).__name__ for layer in base_of(model).layers[1:3]}
    scales_itself = bool(first & {"Rescaling", "Normalization"})
    assert scales_itself == (backbone.preprocessing == "inside"), first


def features(model: keras.Model, pixels: np.ndarray, training: bool = False) -> np.ndarray:
    """The pooled features the head reads: the base's output, before any softmax flattens a
    random network's near-zero values into equal probabilities."""
    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    return pooled(pixels, training=training).numpy()


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Equal to within float precision of their own scale, which for some random-weight
    networks is 1e-12: a fixed tolerance would pass anything."""
    scale = np.abs(theirs).max()
    assert scale > 0, "features all zero: nothing to compare"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


def test_blocks_partition_the_base_from_the_top(model):
    blocks = base_blocks(model)
    layers = base_of(model).layers
    assert len(blocks) >= 4, [b.name for b in blocks]
    assert blocks[0].layers[-1] is layers[-1] and blocks[-1].layers[0] is layers[0]
    assert sum(len(b.layers) for b in blocks) == len(layers)
    assert len({b.name for b in blocks}) == len(blocks)


def test_batchnorm_stays_frozen_and_the_base_in_inference_mode(model):
    unfreeze(model, backbone_of(model).layers // 3)
    trainable = [layer for layer in base_of(model).layers if layer.trainable]
    assert trainable and not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in trainable
    )
    assert isinstance(model.get_layer("base"), InferenceMode)
    pixels = tiny_split(n=2).images.astype("float32")
    assert_same(features(model, pixels, training=True), features(model, pixels))


@pytest.mark.parametrize("share", [None, 3])
def test_both_caches_equal_the_uncached_network(model, share):
    """Phase 1 (the pooled features) and phase 2 (cut below the last third of the layers)."""
    backbone = backbone_of(model)
    unfreeze(model, backbone.layers // share if share else 0)
    groups = training_groups(model, backbone.layers // share if share else None)
    assert groups and all(group.layers for group in groups)
    split = tiny_split(n=4)
    images = split.images.astype("float32")
    cut = cut_below_trainable(model)
    cached = cached_split(cut, split)  # the frozen part's outputs, shaped as training feeds them
    with head_that_shows(model, features(model, images)):
        # Called, not ``predict``: the same computation, without tracing a graph of a network
        # of hundreds of layers for four images (``cached_split`` traces the frozen part's).
        np.testing.assert_allclose(
            cut.trainable(cached.inputs, training=False),
            model(images, training=False),
            rtol=1e-4,
            atol=1e-5,
        )


@contextlib.contextmanager
def head_that_shows(model: keras.Model, pooled: np.ndarray):
    """The head's weights scaled to the features', for the block: a random network's
    features can be 1e-12, which the head's softmax flattens into equal probabilities
    whatever they are; scaled, a difference in the features shows in the probabilities."""
    head = model.get_layer("probs")
    kernel, bias = head.get_weights()
    scale = np.abs(pooled).max() * np.sqrt(kernel.shape[0])
    assert scale > 0, "features all zero: nothing to compare"
    head.set_weights([np.random.default_rng(0).normal(size=kernel.shape) / scale, bias])
    try:
        yield
    finally:
        head.set_weights([kernel, bias])


DOWNLOADED = [
    name
    for name, backbone in BACKBONES.items()
    if backbone.pretrained and not backbone.installed_weights
]
INSTALLED = [name for name, backbone in BACKBONES.items() if backbone.installed_weights]


def test_the_lite_backbones_bring_their_weights_and_the_others_download_them():
    assert INSTALLED == ["efficientnetlite0", "efficientnetlite1", "efficientnetlite2"]
    assert all(BACKBONES[name].weights_file for name in DOWNLOADED)


@pytest.mark.parametrize("name", DOWNLOADED)
def test_offline_the_hint_names_the_backbones_weights_file(name, monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", no_network)
    backbone = BACKBONES[name]
    with pytest.raises(PipelineError, match=f"copy {backbone.weights_file} into ~/.keras/models/"):
        build_model(backbone, "imagenet", 0.0, 32, (32, 32, 3), 10)


def test_tinynet_has_no_imagenet_weights_and_says_so():
    with pytest.raises(PipelineError, match="TinyNet has no ImageNet weights"):
        build_model(BACKBONES["tinynet"], "imagenet", 0.0, 32, (32, 32, 3), 10)


@pytest.mark.parametrize("name", INSTALLED)
def test_offline_the_installed_imagenet_weights_load(name, monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = build_model(BACKBONES[name], "imagenet", 0.0, 32, (32, 32, 3), 10)
    assert backbone_of(model).name == name
    assert "ImageNet weights from efficientnet-lite" in BACKBONES[name].weights_source("imagenet")
