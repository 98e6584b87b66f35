"""Class names that travel with a model, so that no prediction is ever named from another
project's list.

A ``.keras`` checkpoint holds them as ``labels.json`` inside its zip archive, beside the
``config.json`` and weights Keras writes (Keras reads only its own entries, so the archive
still loads anywhere). An ONNX export holds them in its metadata (``class_names``); a LiteRT
file or a SavedModel folder has a ``labels.json`` sidecar written with it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from src.finetune.errors import PipelineError
from src.finetune.files import LARGE_MEMBER, SMALL_MEMBER, bounded_zip, read_member

ENTRY = "labels.json"
WEIGHTS_ENTRY = "model.weights.h5"  # Keras's: the one member that may be large
METADATA_KEY = "class_names"


def encode(class_names: tuple[str, ...]) -> str:
    return json.dumps({METADATA_KEY: list(class_names)})


def decode(text: str | bytes, where: str) -> tuple[str, ...]:
    """The class names of ``encode``'s JSON, or of a bare JSON list (ONNX metadata's value);
    anything else is one line naming ``where``."""
    try:
        names = json.loads(text)
        names = names[METADATA_KEY] if isinstance(names, dict) else names
    except (ValueError, KeyError, TypeError):
        raise PipelineError(f"{where} holds no readable list of class names") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PipelineError(f"{where}: its class names are not a list of strings")
    return tuple(names)


def add_to_archive(path: Path, class_names: tuple[str, ...]) -> None:
    """Append the class names to a ``.keras`` archive (before it is renamed into place)."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(ENTRY, encode(class_names))


def read_from_archive(
    path: Path, fix: str = "run `dvc repro --force` to rebuild it"
) -> tuple[str, ...] | None:
    """The class names a ``.keras`` archive holds; None when it holds none. The archive's
    members are checked before any is read (see ``bounded_zip``); ``fix`` ends the line
    that refuses it."""
    with bounded_zip(path, fix, {WEIGHTS_ENTRY: LARGE_MEMBER}) as archive:
        if ENTRY not in archive.namelist():
            return None
        return decode(read_member(archive, ENTRY, SMALL_MEMBER, fix), f"{path}: {ENTRY}")


def sidecar(path: Path) -> Path:
    """Where the class names of an export without metadata of its own live: ``model.tflite``
    -> ``model.labels.json``; inside a SavedModel folder, ``labels.json``."""
    return path / ENTRY if path.is_dir() else path.with_suffix(".labels.json")


def write_sidecar(path: Path, class_names: tuple[str, ...]) -> None:
    sidecar(path).write_text(encode(class_names) + "\n")


def read_sidecar(path: Path) -> tuple[str, ...] | None:
    found = sidecar(path)
    return decode(found.read_text(), str(found)) if found.is_file() else None
