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


def is_class_name(text: object) -> bool:
    """Whether ``text`` can name a class everywhere it goes (logs, report, MLflow, JSON):
    printable text of 1-100 characters that encodes as UTF-8 (a folder name in bytes that
    are not UTF-8 arrives with surrogates, which do not)."""
    if not isinstance(text, str) or not 0 < len(text) <= 100 or not text.isprintable():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def checked(names: list[str] | tuple[str, ...], where: str) -> tuple[str, ...]:
    """The class names, each a name (``is_class_name``) and each once, or one line naming
    ``where`` and the first that is not: a prediction named by an empty, a duplicated or a
    page-long label would be no name at all."""
    bad = next((name for name in names if not is_class_name(name)), None)
    if bad is not None:
        shown = repr(bad[:60]) + ("..." if len(bad) > 60 else "") if isinstance(bad, str) else (
            type(bad).__name__
        )  # fmt: skip
        raise PipelineError(
            f"{where}: the class name {shown} is not 1-100 printable characters; the file "
            "is damaged or was edited: rebuild it with dvc repro"
        )
    seen: set[str] = set()
    twice = next((name for name in names if name in seen or seen.add(name)), None)
    if twice is not None:
        raise PipelineError(
            f"{where}: the class name {twice!r} appears twice; each class needs a name of its "
            "own: rebuild it with dvc repro"
        )
    return tuple(names)


def encode(class_names: tuple[str, ...]) -> str:
    return json.dumps({METADATA_KEY: list(checked(class_names, "the class names to write"))})


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
    return checked(names, where)


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
