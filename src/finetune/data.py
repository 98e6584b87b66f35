"""CIFAR-10 from the official python archive: download, verify, read, split.

The archive's batches are read straight out of the tar file (nothing is extracted) with an
unpickler that only rebuilds NumPy arrays, so a tampered archive cannot run code.
TensorFlow is not imported here: the prepare stage stays quick to start.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from src.finetune.errors import PipelineError
from src.finetune.files import atomic_path

log = logging.getLogger(__name__)

ARCHIVE_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"{ARCHIVE_DIR}/data_batch_{i}" for i in range(1, 6))
TEST_BATCH = f"{ARCHIVE_DIR}/test_batch"
META = f"{ARCHIVE_DIR}/batches.meta"
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
SPLITS = ("train", "val", "test")
DOWNLOAD_TIMEOUT_S = 15


@dataclass(frozen=True)
class Split:
    """Images as uint8 NHWC, labels as integer class indices.

    During cached training ``images`` holds instead what the frozen part of the network made
    of the images: one float array per tensor it hands on (see ``caching``).
    """

    images: np.ndarray | tuple[np.ndarray, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class Cifar10:
    train: Split
    test: Split
    class_names: tuple[str, ...]


# --- download and verify ------------------------------------------------------------------


def ensure_archive(archive: Path, url: str, sha256: str) -> None:
    """Download the archive if it is missing, then check it against the expected digest."""
    if not archive.exists():
        download(url, archive, sha256)
    verify_sha256(archive, sha256)


def download(url: str, archive: Path, sha256: str) -> None:
    log.info("downloading %s -> %s", url, archive)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            with atomic_path(archive) as partial:
                _copy_with_progress(response, partial, total)
                verify_sha256(partial, sha256, downloaded_from=url)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise PipelineError(
            f"cannot download {url} ({reason}); without network, put the CIFAR-10 python "
            f"archive at {archive} (sha256 {sha256}) and run again"
        ) from None


def _copy_with_progress(response: io.BufferedIOBase, target: Path, total: int) -> None:
    done, next_report = 0, 0.1
    with target.open("wb") as handle:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            handle.write(chunk)
            done += len(chunk)
            if total and done / total >= next_report:
                log.info("  %3.0f%% of %.0f MB", 100 * done / total, total / 1e6)
                next_report += 0.1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, downloaded_from: str | None = None) -> None:
    actual = sha256_of(path)
    if actual == expected:
        return
    if downloaded_from:
        raise PipelineError(
            f"the file downloaded from {downloaded_from} has sha256 {actual}, expected {expected} "
            "(data.sha256); it was discarded, try again or check data.url"
        )
    raise PipelineError(
        f"{path} has sha256 {actual}, expected {expected} (data.sha256); the file was not used: "
        "delete it to download it again, or set data.sha256 if you meant this archive"
    )


# --- read -----------------------------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Allows only what the official batches contain: dicts, lists, bytes and NumPy arrays.

    ``_codecs.encode`` is how Python 3 writes bytes in the archive's protocol-2 pickles.
    """

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_archive(archive: Path) -> Cifar10:
    """Read every batch of an archive in the official layout, whatever its batch sizes."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = set(tar.getnames())
            missing = [m for m in (*TRAIN_BATCHES, TEST_BATCH, META) if m not in members]
            if missing:
                raise PipelineError(
                    f"{archive} is not the CIFAR-10 python archive: missing {', '.join(missing)}; "
                    "use cifar-10-python.tar.gz from the official site"
                )
            train = _concat([_read_batch(tar, name) for name in TRAIN_BATCHES])
            test = _read_batch(tar, TEST_BATCH)
            meta = _unpickle(tar, META)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise PipelineError(
            f"{archive} is truncated or not a .tar.gz ({error}); delete it and run again"
        ) from None
    names = tuple(_text(name) for name in meta[b"label_names"])
    if len(names) != NUM_CLASSES:
        raise PipelineError(f"{archive}: {META} names {len(names)} classes, expected 10")
    return Cifar10(train=train, test=test, class_names=names)


def _unpickle(tar: tarfile.TarFile, name: str) -> dict:
    handle = tar.extractfile(name)
    if handle is None:
        raise PipelineError(f"{name} in the archive is not a regular file")
    try:
        return _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{name} in the archive is not a CIFAR-10 batch ({error})") from None


def _read_batch(tar: tarfile.TarFile, name: str) -> Split:
    batch = _unpickle(tar, name)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except KeyError as error:
        raise PipelineError(f"{name} in the archive lacks the key {error}") from None
    if data.ndim != 2 or data.shape[1] != np.prod(IMAGE_SHAPE) or len(labels) != len(data):
        raise PipelineError(
            f"{name}: expected data of shape (N, 3072) and N labels, got {data.shape} "
            f"and {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PipelineError(f"{name}: labels must lie in 0..9")
    # The archive stores each image as 1024 red, then green, then blue bytes (channels first).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels)


def _concat(splits: list[Split]) -> Split:
    return Split(
        np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits])
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- split ----------------------------------------------------------------------------------


def stratified_subset(split: Split, limit: int | None, rng: np.random.Generator) -> Split:
    """At most ``limit`` images, keeping the class proportions."""
    if limit is None or limit >= len(split):
        return split
    keep, _ = _stratified_indices(split.labels, limit / len(split), rng)
    return split.take(keep)


def split_validation(
    split: Split, fraction: float, rng: np.random.Generator
) -> tuple[Split, Split]:
    """Hold out ``fraction`` of each class for validation; returns (train, val)."""
    val, train = _stratified_indices(split.labels, fraction, rng)
    if len(val) == 0 or len(train) == 0:
        raise PipelineError(
            f"data.val_split {fraction} of {len(split)} images leaves an empty split; "
            "raise data.train_limit or change data.val_split"
        )
    return split.take(train), split.take(val)


def _stratified_indices(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled indices of each class, cut at ``fraction``: (selected, rest), both sorted."""
    selected, rest = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = round(fraction * len(members))
        selected.append(members[:cut])
        rest.append(members[cut:])
    return np.sort(np.concatenate(selected)), np.sort(np.concatenate(rest))


# --- prepared splits ------------------------------------------------------------------------


def save_splits(out_dir: Path, splits: dict[str, Split], class_names: tuple[str, ...]) -> None:
    for name, split in splits.items():
        with atomic_path(out_dir / f"{name}.npz") as partial:
            np.savez(
                partial, images=split.images, labels=split.labels, class_names=np.array(class_names)
            )


def load_split(data_dir: Path, name: str) -> Split:
    path = Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro prepare` first")
    with np.load(path, allow_pickle=False) as arrays:
        return Split(arrays["images"], arrays["labels"])


def load_class_names(data_dir: Path) -> tuple[str, ...]:
    with np.load(Path(data_dir) / "test.npz", allow_pickle=False) as arrays:
        return tuple(str(name) for name in arrays["class_names"])
