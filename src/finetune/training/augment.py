"""Training-time augmentation from ``augment.*``, built from Keras's preprocessing layers.

It runs in the ``tf.data`` pipeline on whole batches of float pixels 0-255, before the model,
so validation, evaluation and predictions never see it. The random stream is seeded per
epoch: every layer's seed generator is reset to a state derived from ``seed`` and the epoch
before the epoch's first batch, so two runs with the same params see the same augmented
images, and a stage resumed after a kill augments its remaining epochs as the killed one
would have.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from src.finetune.params import AugmentParams

VALUE_RANGE = (0, 255)


class Augmentation:
    """Per-batch augmentation of (images, one-hot labels): the image layers, then MixUp or
    CutMix, which blend pairs of images and their labels. With both on, batches alternate."""

    def __init__(self, params: AugmentParams, seed: int, image_shape: tuple[int, int, int]) -> None:
        self.params = params
        self.seed = seed
        self.image_layers = _image_layers(params, image_shape)
        self.mixers = _mixers(params)
        self._generators = [
            layer.generator
            for top in (*self.image_layers, *self.mixers)
            for layer in top._flatten_layers()
            if isinstance(getattr(layer, "generator", None), keras.random.SeedGenerator)
        ]

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, batch: tf.Tensor) -> tuple:
        for layer in self.image_layers:
            images = layer(images, training=True)
        if not self.mixers:
            return images, labels
        mixed = [lambda mixer=mixer: mixer({"images": images, "labels": labels}, training=True)
                 for mixer in self.mixers]  # fmt: skip
        out = mixed[0]() if len(mixed) == 1 else tf.cond(batch % 2 == 0, mixed[0], mixed[1])
        return out["images"], out["labels"]

    def reseed(self, epoch: int) -> None:
        """Restart every layer's random stream at a state that depends on the seed and epoch."""
        for index, generator in enumerate(self._generators):
            state = np.array([self.seed, epoch * 1000 + index], dtype=generator.state.dtype)
            generator.state.assign(state)

    def describe(self) -> str:
        on = {k: v for k, v in self.params.model_dump().items() if v}
        return ", ".join(f"{k}={v}" for k, v in on.items())


def augmentation(
    params: AugmentParams, seed: int, image_shape: tuple[int, int, int]
) -> Augmentation | None:
    """The augmentation the params ask for, or None when every key is off."""
    return Augmentation(params, seed, image_shape) if params.active else None


def _image_layers(params: AugmentParams, shape: tuple[int, int, int]) -> list[Any]:
    layers = keras.layers
    height, width = shape[:2]
    chosen: list[Any] = []
    if params.flip:
        chosen.append(layers.RandomFlip("horizontal"))
    if params.crop_pad:
        chosen += [layers.ZeroPadding2D(params.crop_pad), layers.RandomCrop(height, width)]
    if params.rotation:
        chosen.append(layers.RandomRotation(params.rotation, fill_mode="reflect"))
    if params.color_jitter:
        strength = params.color_jitter
        chosen.append(
            layers.RandomColorJitter(
                VALUE_RANGE,
                brightness_factor=strength,
                contrast_factor=strength,
                # Keras's saturation factor is 0.5 for "unchanged", 0 for grey, 1 for saturated.
                saturation_factor=(0.5 - strength / 2, 0.5 + strength / 2),
            )
        )
    if params.randaugment:
        chosen.append(layers.RandAugment(VALUE_RANGE, num_ops=params.randaugment))
    if params.erasing:
        chosen.append(layers.RandomErasing(params.erasing, value_range=VALUE_RANGE))
    return chosen


def _mixers(params: AugmentParams) -> list[Any]:
    mixers: list[Any] = []
    if params.mixup:
        mixers.append(keras.layers.MixUp(alpha=params.mixup))
    if params.cutmix:
        # Keras draws CutMix's Beta parameter from a range; a range of one value fixes it.
        mixers.append(keras.layers.CutMix(factor=(params.cutmix, params.cutmix)))
    return mixers
