"""PyTorch checkpoints written opcode by opcode, without PyTorch: well-formed ones and the
hostile variants a reader must refuse (see ``src/finetune/model/torch_checkpoint.py``)."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

PROTO = b"\x80\x02"


def text(value: str) -> bytes:
    data = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    if 0 <= value < 2**31:
        return pickle.BININT + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(data)]) + data


def glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def item(value: Any) -> bytes:
    """The opcodes of a small value: a str, an int, a float, None, a bool or a tuple."""
    if isinstance(value, bytes):
        return value  # opcodes already
    if isinstance(value, bool) or value is None:
        return {True: pickle.NEWTRUE, False: pickle.NEWFALSE, None: pickle.NONE}[value]
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return pickle.BINFLOAT + struct.pack(">d", value)
    if isinstance(value, str):
        return text(value)
    return pickle.MARK + b"".join(item(v) for v in value) + pickle.TUPLE


def storage(key: str, elements: Any, kind: str = "FloatStorage", fields: int = 5) -> bytes:
    """A persistent reference to a storage: ('storage', torch.<kind>, key, 'cpu', elements)."""
    parts = [text("storage"), glob("torch", kind), item(key), text("cpu"), item(elements)]
    parts += [pickle.NONE] * (fields - 5)
    return pickle.MARK + b"".join(parts[:fields]) + pickle.TUPLE + pickle.BINPERSID


def tensor(reference: bytes, offset: Any = 0, size: Any = (4,), stride: Any = (1,)) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    args = [reference, item(offset), item(size), item(stride), pickle.NEWFALSE, ordered_dict()]
    return (
        glob("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + b"".join(args)
        + (pickle.TUPLE + pickle.REDUCE)
    )


def ordered_dict(entries: dict[Any, bytes] | None = None) -> bytes:
    out = glob("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    if entries:
        out += pickle.MARK + b"".join(item(k) + v for k, v in entries.items()) + pickle.SETITEMS
    return out


def state_dict(entries: dict[Any, bytes]) -> bytes:
    return PROTO + ordered_dict(entries) + pickle.STOP


def write_zip(path: Path, pickled: bytes, storages: dict[str, np.ndarray]) -> Path:
    """A zip checkpoint as torch.save writes it: archive/data.pkl, byteorder, data/<key>."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        for key, values in storages.items():
            archive.writestr(f"archive/data/{key}", values.astype("<f4").tobytes())
        archive.writestr("archive/version", "3\n")
    return path


def write_legacy(
    path: Path, pickled: bytes, storages: dict[str, np.ndarray], header: Any = None
) -> Path:
    """A legacy checkpoint: magic, version, header, the state dict, its storage keys, then
    each storage's element count and bytes."""
    header = header if header is not None else {"little_endian": True}
    parts = [PROTO + item(0x1950A86A20F9469CFC6C) + pickle.STOP, PROTO + item(1001) + pickle.STOP]
    parts.append(pickle.dumps(header, protocol=2))
    parts.append(pickled)
    parts.append(pickle.dumps(list(storages), protocol=2))
    for values in storages.values():
        parts.append(struct.pack("<q", values.size) + values.astype("<f4").tobytes())
    path.write_bytes(b"".join(parts))
    return path


def deep_tuple(depth: int) -> bytes:
    """A tuple nested ``depth`` deep whose halves are one shared object: a few bytes per level
    in the pickle, 2**depth leaves to hash or print."""
    put, get = pickle.BINPUT + b"\x00" + pickle.POP, pickle.BINGET + b"\x00"
    levels = (get + get + pickle.TUPLE2 + put) * depth
    return item(0) + put + levels + get
