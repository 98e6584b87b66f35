"""Grad-CAM at the base's output, for any backbone: one map per image in 0..1, looking where
the class's evidence is."""

import numpy as np
import pytest

from src.finetune.evaluation.gradcam import grad_cam
from src.finetune.model.backbones import BACKBONES
from src.finetune.model.network import build_model


@pytest.mark.parametrize("backbone", ["efficientnetlite0", "efficientnetv2b0"])
def test_one_map_per_image_scaled_to_one(backbone):
    model = build_model(BACKBONES[backbone], None, 0.0, 64, (32, 32, 3), 3)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    maps = grad_cam(model, images, np.array([0, 1, 2]))
    assert maps.shape == (3, 2, 2)  # 64 pixels down to the base's 2x2 feature map
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(m.max() in (0.0, 1.0) for m in maps), "each map peaks at 1 (or is empty)"
    assert any(m.max() == 1.0 for m in maps), "not all empty"


def test_the_map_follows_the_evidence_for_the_class():
    """A head that scores class 1 by the top-left feature only: Grad-CAM for class 1 lights
    the top-left cell and nothing else."""
    model = build_model(BACKBONES["efficientnetlite0"], "imagenet", 0.0, 64, (64, 64, 3), 2)
    dense = model.get_layer("probs")
    kernel = np.zeros(dense.kernel.shape, np.float32)
    kernel[:, 1] = 1.0  # class 1 grows with every channel of the pooled features
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    image = np.full((1, 64, 64, 3), 127.0, np.float32)
    image[0, :32, :32] = np.random.default_rng(1).uniform(0, 255, (32, 32, 3))  # texture
    maps = grad_cam(model, image, np.array([1]))[0]
    assert np.argmax(maps) == 0, maps  # the textured top-left cell
