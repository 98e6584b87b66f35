"""Real image files in every mode and format a folder may hold."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


def hostile_files(folder: Path, per_format: int = 16, seed: int = 0) -> list[Path]:
    """Damaged files of every format Pillow writes, named ``*.png`` as a hostile folder would
    name them: each a small real image cut short, or with random bytes of its header or its
    body overwritten. Pillow chooses the decoder from the content, not the name."""
    import io
    import random

    from PIL import Image

    Image.init()
    rng = random.Random(seed)
    base = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 10, 3), np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for format in sorted(set(Image.SAVE)):
        content = _saved_as(base, format, io.BytesIO())
        if content is None:  # a writer this build of Pillow lacks (or for other images)
            continue
        for index in range(per_format):
            damaged = bytearray(content)
            if index % 3 == 0:
                damaged = damaged[: rng.randrange(1, len(damaged))]
            else:
                span = min(len(damaged), 64) if index % 3 == 1 else len(damaged)
                for _ in range(rng.randrange(1, 8)):
                    damaged[rng.randrange(span)] = rng.randrange(256)
            path = folder / f"{format.lower()}-{index}.png"
            path.write_bytes(bytes(damaged))
            written.append(path)
    return written


def _saved_as(image, format: str, buffer) -> bytes | None:
    for mode in ("RGB", "L", "1", "RGBA", "P", "I;16", "F"):
        try:
            image.convert(mode).save(buffer, format=format)
        except Exception:
            buffer.seek(0)
            buffer.truncate()
            continue
        return buffer.getvalue()
    return None


@contextlib.contextmanager
def deep_folder(root: Path, depth: int) -> Iterator[Path]:
    """``root`` with folders ``d/d/d/...`` ``depth`` deep and ``x.png`` at the bottom, made and
    removed through directory handles (the full path may be longer than the OS takes, and
    shutil.rmtree recurses once per level); yields ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    handles = [os.open(root, os.O_RDONLY)]
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=handles[-1])
            handles.append(os.open("d", os.O_RDONLY, dir_fd=handles[-1]))
        with open(os.open("x.png", os.O_WRONLY | os.O_CREAT, dir_fd=handles[-1]), "wb") as bottom:
            bottom.write(b"not an image")
        yield root
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("x.png", dir_fd=handles[-1])
        while len(handles) > 1:
            os.close(handles.pop())
            os.rmdir("d", dir_fd=handles[-1])
        os.close(handles.pop())
