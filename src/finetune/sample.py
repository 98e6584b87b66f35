"""A small generated stand-in for the CIFAR-10 archive, byte-for-byte in the official layout.

Used by the offline demo and the tests: machines without network can run the whole pipeline,
download-and-verify code included, on it. Each class is a coloured stripe pattern of its own
orientation and frequency under noise, so models learn it, but not instantly. Output is
deterministic for a given size and seed (fixed tar and gzip timestamps), so its sha256 is stable.

    python -m src.finetune.sample data/sample/cifar-10-sample.tar.gz --train 2000 --test 500
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from src.finetune.data import ARCHIVE_DIR, META, NUM_CLASSES, TEST_BATCH, TRAIN_BATCHES, sha256_of
from src.finetune.files import atomic_path

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (N, 32, 32, 3) whose stripes and tint depend on the label."""
    n = len(labels)
    grid = np.linspace(0.0, 1.0, 32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    angle = (labels + rng.uniform(-0.3, 0.3, n)) * np.pi / NUM_CLASSES
    frequency = 2.0 + (labels % 3) + rng.uniform(-0.3, 0.3, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    along = xx[None] * np.cos(angle)[:, None, None] + yy[None] * np.sin(angle)[:, None, None]
    wave = np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    hue = np.stack([np.sin(labels * 0.9 + k * 2.1) for k in range(3)], axis=1)
    tint = 0.6 * hue + rng.normal(0, 0.25, (n, 3))
    images = 128 + 70 * wave[..., None] * tint[:, None, None, :] + rng.normal(0, 25, (n, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def write_archive(path: str | Path, n_train: int, n_test: int, seed: int = 0) -> str:
    """Write a CIFAR-10-layout archive of generated images; returns its sha256."""
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(n_train) % NUM_CLASSES)
    test_labels = rng.permutation(np.arange(n_test) % NUM_CLASSES)
    train_images = synthetic_images(train_labels, rng)
    test_images = synthetic_images(test_labels, rng)
    members = {
        META: {
            b"num_cases_per_batch": -(-n_train // len(TRAIN_BATCHES)),
            b"label_names": [name.encode() for name in CLASS_NAMES],
            b"num_vis": 3072,
        },
        TEST_BATCH: _batch(test_images, test_labels, "testing batch 1 of 1"),
    }
    chunks = np.array_split(np.arange(n_train), len(TRAIN_BATCHES))
    for i, (name, chunk) in enumerate(zip(TRAIN_BATCHES, chunks, strict=True), start=1):
        members[name] = _batch(train_images[chunk], train_labels[chunk], f"training batch {i} of 5")
    path = Path(path)
    with atomic_path(path) as partial:
        _write_tar_gz(partial, members)
    return sha256_of(path)


def _batch(images: np.ndarray, labels: np.ndarray, label: str) -> dict:
    channels_first = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {
        b"batch_label": label.encode(),
        b"labels": [int(x) for x in labels],
        b"data": np.ascontiguousarray(channels_first),
        b"filenames": [f"sample_{i:05d}.png".encode() for i in range(len(images))],
    }


def _write_tar_gz(path: Path, members: dict[str, dict]) -> None:
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        directory = tarfile.TarInfo(ARCHIVE_DIR)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name in sorted(members):
            payload = pickle.dumps(members[name], protocol=2)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="archive to write (.tar.gz)")
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--test", type=int, default=500, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_archive(args.out, args.train, args.test, args.seed))


if __name__ == "__main__":
    main()
