"""Small generated stand-ins for the CIFAR-10 and CIFAR-100 archives, in the official layouts.

Used by the tests and the benchmarks: machines without network run the whole pipeline,
download-and-verify code included, on it. Each class is a coloured stripe pattern of its own
orientation and frequency under noise, so models learn it, but not instantly. Output is
deterministic for a given size and seed (fixed tar and gzip timestamps), so its sha256 is stable.

    python -m workbench.archives data/sample/cifar-10-sample.tar.gz --train 2000 --test 500
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from src.finetune.data.archives import CIFAR10, CIFAR100, Archive, sha256_of
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


def synthetic_images(labels: np.ndarray, rng: np.random.Generator, classes: int) -> np.ndarray:
    """uint8 images (N, 32, 32, 3) whose stripes and tint depend on the label."""
    n = len(labels)
    grid = np.linspace(0.0, 1.0, 32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    angle = (labels + rng.uniform(-0.3, 0.3, n)) * np.pi / classes
    frequency = 2.0 + (labels % 3) + rng.uniform(-0.3, 0.3, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    along = xx[None] * np.cos(angle)[:, None, None] + yy[None] * np.sin(angle)[:, None, None]
    wave = np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    hue = np.stack([np.sin(labels * 0.9 + k * 2.1) for k in range(3)], axis=1)
    tint = 0.6 * hue + rng.normal(0, 0.25, (n, 3))
    images = 128 + 70 * wave[..., None] * tint[:, None, None, :] + rng.normal(0, 25, (n, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def write_archive(
    path: str | Path, n_train: int, n_test: int, seed: int = 0, layout: Archive = CIFAR10
) -> str:
    """Write an archive of generated images in ``layout`` (the CIFAR-10 or CIFAR-100 one);
    returns its sha256."""
    rng = np.random.default_rng(seed)
    classes = layout.classes
    train_labels = rng.permutation(np.arange(n_train) % classes)
    test_labels = rng.permutation(np.arange(n_test) % classes)
    train_images = synthetic_images(train_labels, rng, classes)
    test_images = synthetic_images(test_labels, rng, classes)
    names = CLASS_NAMES if layout is CIFAR10 else tuple(f"class_{i:02d}" for i in range(classes))
    key = layout.label_key
    members = {
        layout.meta_member: {
            b"num_cases_per_batch": -(-n_train // len(layout.train_members)),
            layout.names_key: [name.encode() for name in names],
            b"num_vis": 3072,
        },
        layout.test_member: _batch(test_images, test_labels, "testing batch 1 of 1", key),
    }
    chunks = np.array_split(np.arange(n_train), len(layout.train_members))
    for i, (name, chunk) in enumerate(zip(layout.train_members, chunks, strict=True), start=1):
        label = f"training batch {i} of {len(layout.train_members)}"
        members[name] = _batch(train_images[chunk], train_labels[chunk], label, key)
    path = Path(path)
    with atomic_path(path) as partial:
        _write_tar_gz(partial, members, layout.test_member.split("/")[0])
    return sha256_of(path)


def _batch(images: np.ndarray, labels: np.ndarray, label: str, key: bytes) -> dict:
    channels_first = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {
        b"batch_label": label.encode(),
        key: [int(x) for x in labels],
        b"data": np.ascontiguousarray(channels_first),
        b"filenames": [f"sample_{i:05d}.png".encode() for i in range(len(images))],
    }


def _write_tar_gz(path: Path, members: dict[str, dict], top: str) -> None:
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        directory = tarfile.TarInfo(top)
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
    parser.add_argument("--layout", choices=("cifar10", "cifar100"), default="cifar10")
    args = parser.parse_args()
    layout = CIFAR100 if args.layout == "cifar100" else CIFAR10
    print(write_archive(args.out, args.train, args.test, args.seed, layout))


if __name__ == "__main__":
    main()
