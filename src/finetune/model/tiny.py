"""TinyNet: a backbone of 21 layers and 5,000 weights, random weights only, for smoke
runs and the test suite.

It has what the pipeline handles in the real networks, at a hundredth of their cost: its own
input scaling (0-255 pixels in), blocks named the EfficientNet way (``stem``, ``block1a``...,
``top``) so freezing, unfreezing, discriminative rates and gradual unfreezing find them,
BatchNormalization after each convolution, a depthwise convolution, a residual connection
that a cache of the frozen part must carry across the cut, and stochastic depth. A model on it
trains in a second on a CPU, and exports to every format like the others.
"""

from __future__ import annotations

import keras
from keras import layers

from src.finetune.errors import PipelineError

NAME = "tinynet"
WIDTH = 16  # channels of the blocks
HEAD = 32  # channels of the top convolution, the features the new head pools


def _conv_bn(x, filters: int, stride: int, prefix: str):
    x = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{prefix}conv")(x)
    x = layers.BatchNormalization(name=f"{prefix}bn")(x)
    return layers.ReLU(name=f"{prefix}activation")(x)


def build(input_shape: tuple[int, int, int]) -> keras.Model:
    """stem (stride 2) -> block1a (stride 2) -> block2a (depthwise, residual) -> block3a
    (stride 2) -> top (1x1 to ``HEAD`` channels): 21 layers, on raw 0-255 RGB."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescaling")(inputs)
    x = _conv_bn(x, 8, 2, "stem_")
    x = _conv_bn(x, WIDTH, 2, "block1a_")
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block2a_dwconv")(x)
    y = layers.BatchNormalization(name="block2a_bn")(y)
    y = layers.ReLU(name="block2a_activation")(y)
    y = layers.Conv2D(WIDTH, 1, use_bias=False, name="block2a_project_conv")(y)
    y = layers.BatchNormalization(name="block2a_project_bn")(y)
    y = layers.Dropout(0.1, noise_shape=(None, 1, 1, 1), name="block2a_drop")(y)
    x = layers.Add(name="block2a_add")([y, x])
    x = _conv_bn(x, WIDTH, 2, "block3a_")
    x = layers.Conv2D(HEAD, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    x = layers.ReLU(name="top_activation")(x)
    return keras.Model(inputs, x, name=NAME)


def base(weights: str | None, input_shape: tuple[int, int, int]) -> keras.Model:
    """The network with random weights, or a Keras weights file of its own."""
    if weights == "imagenet":
        raise PipelineError(
            "model.weights: TinyNet has no ImageNet weights (it is for smoke runs and tests); "
            "use none, or another backbone"
        )
    model = build(input_shape)
    if weights:
        model.load_weights(weights)
    return model
