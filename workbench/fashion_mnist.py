"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (MIT): 70,000 real 28x28 greyscale
photos of products in 10 classes, written as a folder of PNG files the pipeline reads like
anyone's images. For the learning test and ``make bench-quality``."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

DATASET = Path("/usr/share/datasets/fashion-mnist")
INSTALL = "sudo apt-get install dataset-fashion-mnist"
CLASSES = (
    "tshirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip


class Missing(RuntimeError):
    """The Debian package is not installed; the message says how to install it."""


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip): unsigned bytes, its dimensions from the header, checked."""
    if not path.is_file():
        raise Missing(f"{path} not found; install Fashion-MNIST: {INSTALL}")
    with gzip.open(path, "rb") as handle:
        zero, kind, dims = struct.unpack(">HBB", handle.read(4))
        if zero != 0 or kind != 0x08:
            raise ValueError(f"{path} is not an IDX file of unsigned bytes")
        shape = struct.unpack(f">{dims}I", handle.read(4 * dims))
        data = np.frombuffer(handle.read(), dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {data.size} bytes, its header says {shape}")
    return data.reshape(shape)


def split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``train`` (60,000) or ``t10k`` (10,000): images and labels."""
    images = read_idx(DATASET / f"{name}-images-idx3-ubyte.gz")
    labels = read_idx(DATASET / f"{name}-labels-idx1-ubyte.gz")
    return images, labels


def pick(labels: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` positions of each class, seeded; None: all of them."""
    return np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(len(CLASSES))]
    )


def write_folder(
    root: Path, train_per_class: int | None, test_per_class: int | None, seed: int = 0
) -> Path:
    """``root/train/<class>/*.png`` from the training photos and ``root/test/<class>/*.png``
    from the test photos (None: all of a split's): the pipeline's folder layout with the test
    split given."""
    rng = np.random.default_rng(seed)
    for part, name, count in (
        ("train", "train", train_per_class),
        ("test", "t10k", test_per_class),
    ):
        images, labels = split(name)
        for index in pick(labels, count, rng):
            path = root / part / CLASSES[labels[index]] / f"{index:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], "L").save(path)
    return root
