"""Small files that inflate to far more than they store, and the memory a reader takes on
one: a loader must refuse them from their sizes, before it reads them."""

from __future__ import annotations

import contextlib
import io
import tracemalloc
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def write_zip_bomb(
    path: Path,
    member: str,
    size: int,
    others: dict[str, bytes] | None = None,
    fill: bytes = b" ",
    head: bytes = b"",
) -> Path:
    """A deflated zip whose ``member`` is ``head`` then ``fill`` up to ``size`` bytes (300 MB
    of spaces store as about 300 KB), beside ``others``; written in chunks, so the test never
    holds ``size`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (others or {}).items():
            archive.writestr(name, data)
        with archive.open(member, "w", force_zip64=True) as handle:
            handle.write(head)
            left = size - len(head)
            block = fill * CHUNK
            while left > 0:
                handle.write(block[:left])
                left -= len(block)
    return path


def npy_head(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """The header of an ``.npy`` file of ``shape``: what np.load reads before the data."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


@dataclass
class Peak:
    bytes: int = 0


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    """The most memory Python objects and NumPy arrays took at once in the block, over what
    they held before it (tracemalloc)."""
    peak = Peak()
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
