"""Real image files in every mode and format a folder may hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Every mode and format a folder may hold, as (Pillow mode, suffix): the tests' folders mix them.
IMAGE_KINDS = (
    ("RGB", ".jpg"),
    ("RGB", ".png"),
    ("L", ".png"),
    ("RGBA", ".png"),
    ("P", ".gif"),
    ("CMYK", ".jpg"),
    ("I;16", ".png"),
    ("RGB", ".webp"),
    ("RGB", ".bmp"),
)


def write_image(path: Path, mode: str, size: tuple[int, int], shade: int) -> Path:
    """A real image file: a gradient of ``shade`` in ``mode``, ``size`` = (width, height)."""
    from PIL import Image

    width, height = size
    ramp = np.linspace(0, 1, width)[None, :] * np.ones((height, 1))
    rgb = np.stack([ramp * shade, (1 - ramp) * 255, np.full_like(ramp, shade)], axis=-1)
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode == "I;16":
        image = Image.fromarray((ramp * 257 * shade).astype(np.uint16))
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def image_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog", "fox")):
    """One sub-folder per class of real images in mixed sizes, modes and formats."""
    for index, name in enumerate(classes):
        for i in range(per_class):
            mode, suffix = IMAGE_KINDS[(i + index) % len(IMAGE_KINDS)]
            size = (20 + 13 * i, 30 + 7 * index)
            write_image(root / name / f"{i:03d}{suffix}", mode, size, shade=60 + 60 * index)
    return root
