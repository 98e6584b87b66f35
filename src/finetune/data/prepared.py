"""The prepared splits on disk, as every data source writes them and every stage reads them.

The splits are uint8 arrays in ``.npy`` files, written a chunk at a time and opened
memory-mapped; the training input pipeline reads the rows of each batch with positioned
reads (``Rows``), so nothing stays mapped and memory does not grow with the number of
images. ``classes.json`` names the classes and the source. TensorFlow is not imported here:
the prepare stage stays quick to start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from src.finetune.data.splits import DataInfo, Split
from src.finetune.environment import rerun
from src.finetune.errors import PipelineError
from src.finetune.files import atomic_path, write_json

SPLITS = ("train", "val", "test")
INFO_FILE = "classes.json"
WRITE_CHUNK = 4096  # images copied at a time: memory stays bounded whatever the split's size


def save_split(out_dir: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a split as ``<name>_images.npy`` and ``<name>_labels.npy``."""
    write_array(out_dir / f"{name}_images.npy", images)
    write_array(out_dir / f"{name}_labels.npy", np.asarray(labels, dtype=np.int64))


@dataclass(frozen=True)
class Rows:
    """The rows of a C-ordered array stored in a file, read on demand with positioned reads:
    unlike a memory map, reading them leaves no page of the file in the process's memory."""

    path: Path
    offset: int  # bytes before the first row (a .npy header)
    shape: tuple[int, ...]  # of the whole array
    dtype: np.dtype

    @classmethod
    def of(cls, array: np.ndarray) -> Rows | None:
        """The rows of ``array`` when it maps a whole file (a prepared split as loaded), else
        None: read it as an array. A slice of a map keeps the map's ``offset``, not its own,
        so the file positions of a part could not be trusted."""
        if not isinstance(array, np.memmap) or array.filename is None:
            return None
        whole = int(array.offset) + array.nbytes == os.path.getsize(array.filename)
        if not (array.flags.c_contiguous and whole):
            return None
        return cls(Path(array.filename), int(array.offset), array.shape, array.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, indices: np.ndarray) -> np.ndarray:
        """``array[indices]``: each run of consecutive rows in one positioned read, straight
        into the result."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        if not len(indices):
            return out
        flat = out.reshape(len(indices), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        with self.path.open("rb") as handle:
            for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(indices)], strict=True):
                self._read_into(handle.fileno(), flat[start:end], int(indices[start]))
        return out

    def _read_into(self, fd: int, rows: np.ndarray, first: int) -> None:
        """Fill ``rows`` (bytes) from row ``first`` on; a short read (the file cut) is an
        error, never rows left as they were."""
        buffer, position = memoryview(rows).cast("B"), self.offset + first * self.row_bytes
        while len(buffer):
            count = os.preadv(fd, [buffer], position)
            if count == 0:
                raise PipelineError(
                    f"{self.path}: the file ends before row {first + len(rows)}; it was cut or "
                    "changed while in use: run `dvc repro prepare` to write it again"
                )
            buffer, position = buffer[count:], position + count


def write_array(path: Path, source: np.ndarray | Rows, indices: np.ndarray | None = None) -> None:
    """``source`` (or ``source[indices]``) to a .npy file a chunk at a time, through the file:
    ``source`` may be on disk and larger than memory, and the written pages stay out of it."""
    rows = np.arange(len(source)) if indices is None else np.asarray(indices)
    take = source.read if isinstance(source, Rows) else source.__getitem__
    header = {
        "descr": npy.dtype_to_descr(np.dtype(source.dtype)),
        "fortran_order": False,
        "shape": (len(rows), *source.shape[1:]),
    }
    with atomic_path(path) as partial, partial.open("wb") as handle:
        npy.write_array_header_1_0(handle, header)
        for start in range(0, len(rows), WRITE_CHUNK):
            chunk = np.ascontiguousarray(take(rows[start : start + WRITE_CHUNK]), source.dtype)
            handle.write(chunk.tobytes())


def save_info(out_dir: Path, info: DataInfo) -> None:
    write_json(
        out_dir / INFO_FILE,
        {
            "class_names": list(info.class_names),
            "source": info.source,
            "image_shape": list(info.image_shape),
        },
    )


FILES = "files.json"


def save_files(out_dir: Path, files: dict[str, list[str]]) -> None:
    """The file each image of each split came from (a folder source), for messages that name
    them (the data checks)."""
    (out_dir / FILES).write_text(json.dumps(files) + "\n")


def load_files(data_dir: Path) -> dict[str, list[str]] | None:
    """What ``save_files`` wrote; None for a source without files (an archive)."""
    path = Path(data_dir) / FILES
    return json.loads(path.read_text()) if path.is_file() else None


def load_info(data_dir: Path) -> DataInfo:
    path = Path(data_dir) / INFO_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found; run {rerun('prepare')} first")
    try:
        raw = json.loads(path.read_text())
        return DataInfo(
            tuple(str(n) for n in raw["class_names"]),
            str(raw["source"]),
            tuple(int(d) for d in raw["image_shape"]),  # type: ignore[arg-type]
        )
    except (ValueError, KeyError, TypeError) as error:
        raise PipelineError(
            f"{path} is damaged ({type(error).__name__}); run {rerun('prepare', force=True)}"
        ) from None


def load_split(data_dir: Path, name: str) -> Split:
    """A prepared split, its images memory-mapped (read from disk as batches need them)."""
    data_dir = Path(data_dir)
    info = load_info(data_dir)
    images, labels = (data_dir / f"{name}_{part}.npy" for part in ("images", "labels"))
    if not images.is_file() or not labels.is_file():
        raise PipelineError(f"{images} not found; run {rerun('prepare')} first")
    try:
        pixels = np.load(images, mmap_mode="r", allow_pickle=False)
        classes = np.load(labels, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise PipelineError(
            f"{images.parent}: the {name} split is damaged ({error}); run "
            f"{rerun('prepare', force=True)}"
        ) from None
    if pixels.shape[1:] != info.image_shape or len(pixels) != len(classes):
        raise PipelineError(
            f"{images}: {pixels.shape} images for {len(classes)} labels, expected "
            f"{info.image_shape} each; run {rerun('prepare', force=True)}"
        )
    if pixels.dtype != np.uint8 or classes.ndim != 1 or classes.dtype.kind not in "iu":
        raise PipelineError(
            f"{images.parent}: the {name} split holds {pixels.dtype} pixels and "
            f"{classes.dtype} labels of shape {classes.shape}, not uint8 pixels and one class "
            f"index per image; run {rerun('prepare', force=True)}"
        )
    if classes.size and (classes.min() < 0 or classes.max() >= info.classes):
        raise PipelineError(
            f"{labels}: labels outside 0..{info.classes - 1}; run {rerun('prepare', force=True)}"
        )
    return Split(pixels, classes, info.classes)
