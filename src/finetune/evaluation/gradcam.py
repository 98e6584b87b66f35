"""Grad-CAM (Selvaraju et al., 2017; the keras.io example): where in an image the fine-tuned
model looked for the class it scored.

Taken at the base's output, its last convolutional feature map, so it works alike for every
backbone: the gradient of the class's probability with respect to that map, averaged over
space, weighs its channels; their weighted sum, rectified and scaled to 0..1, is the map.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from src.finetune.model.network import apply_head, base_of, image_input


def grad_cam(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One (h, w) map in 0..1 per image, for the class given for it; h, w the feature map's
    size (the caller upsamples it onto the image)."""
    inputs, x = image_input(model)
    features = base_of(model)(x, training=False)
    twin = keras.Model(inputs, [features, apply_head(model, features)])
    with tf.GradientTape() as tape:
        feature_map, probabilities = twin(tf.convert_to_tensor(images, tf.float32), training=False)
        scored = tf.gather(probabilities, classes, axis=1, batch_dims=1)
    gradients = tape.gradient(scored, feature_map)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1)).numpy()
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
