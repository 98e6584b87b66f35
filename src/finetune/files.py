"""The files stages exchange: written so that an interrupted stage never leaves a
half-written file behind, read back checked so that a damaged one is one clear line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from src.finetune.errors import PipelineError, first_line

Model = TypeVar("Model", bound=BaseModel)

# What one file the pipeline reads, or one member of a zip it reads, may hold. JSON and CSV
# (a model's config and metadata, class names, metrics, a history, a backup's state) stay far
# below SMALL_MEMBER; the weights of the largest backbone with its optimizer state
# (ConvNeXt-Tiny, about 330 MB) below LARGE_MEMBER.
SMALL_MEMBER = 16_000_000
LARGE_MEMBER = 2_000_000_000
# Keras and NumPy store their members uncompressed and DEFLATE reaches about 1032:1, so a
# member beyond RATIO_FLOOR that inflates to more than MAX_RATIO times what it stores, or an
# archive that inflates to more than MAX_RATIO times its size, is a bomb, not a model.
MAX_RATIO = 100
RATIO_FLOOR = 1_000_000


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; rename it into place on success.

    The temporary name keeps all suffixes (``.weights.h5``), because writers such as
    ``model.save`` choose the format from them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = "".join(path.suffixes)
    partial = path.with_name(f".{path.name.removesuffix(suffixes)}.partial{suffixes}")
    try:
        with naming_the_output(path, partial):
            yield partial
            os.replace(partial, path)
    finally:
        # A failing clean-up (a read-only directory) must not hide why the write failed.
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; it replaces ``path`` only on success."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with naming_the_output(path, partial):
            yield partial
            if path.exists():
                shutil.rmtree(path)
            os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def naming_the_output(path: Path, partial: Path) -> Iterator[None]:
    """Give an OS error about no file (a ``write`` on a full disk) or about the temporary
    sibling the output's own path, so that the stage's one-line error names the output."""
    try:
        yield
    except (ConnectionError, TimeoutError, socket.gaierror, ssl.SSLError):
        raise  # the network failed while a download was written: not about the output
    except OSError as error:
        if error.filename is None or str(error.filename) == str(partial):
            error.filename = str(path)
        raise


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(payload, indent=2) + "\n")


def read_json(path: str | Path, schema: type[Model], fix: str) -> Model:
    """A JSON file another stage wrote, checked against ``schema``; anything else, from a
    missing file to a value of the wrong type, is one line naming the file and ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; {fix}")
    check_file_size(path, SMALL_MEMBER, fix)
    try:
        content = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # JSON, UTF-8, a number of 5,000 digits
        reason = first_line(error, 100)
        raise PipelineError(f"{path} is not valid JSON ({reason}); {fix}") from None
    if not isinstance(content, dict):
        raise PipelineError(f"{path} is not a JSON object; {fix}")
    try:
        return schema.model_validate(content)
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(part) for part in detail["loc"])
        if detail["type"] == "missing":
            raise PipelineError(f"{path} lacks {where}; {fix}") from None
        problem = detail["msg"].removeprefix("Value error, ")
        problem = problem[:1].lower() + problem[1:]
        raise PipelineError(f"{path}: {where or 'its content'}: {problem}; {fix}") from None


@contextlib.contextmanager
def bounded_zip(
    path: str | Path, fix: str, limits: Mapping[str, int] | None = None, default: int = SMALL_MEMBER
) -> Iterator[zipfile.ZipFile]:
    """A zip archive (a ``.keras`` checkpoint, an ``.npz``) whose members were checked, before
    any is read, against what they may inflate to: ``limits`` by name, ``default`` for the
    others, their sum and the file's real size. Reading a member with what a hostile file
    declares (1 GiB of config from 1 MB on disk) would exhaust memory before any error is
    said; refused here, it is one line naming the file and ``fix``. Read members with
    ``read_member``, or hand the path to a reader that uses Python's ``zipfile`` (it never
    inflates a member beyond its declared size)."""
    path = Path(path)
    limits = dict(limits or {})
    try:
        size = path.stat().st_size
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as error:  # ValueError: a bad directory
        raise PipelineError(
            f"{path} is not a readable zip archive ({first_line(error, 100)}); {fix}"
        ) from None
    with archive:
        total = 0
        for info in archive.infolist():
            limit = limits.get(info.filename, default)
            if info.file_size > limit:
                raise PipelineError(
                    f"{path}: {info.filename[:100]} inflates to {_megabytes(info.file_size)}, "
                    f"more than the {_megabytes(limit)} it may hold; it was not read: {fix}"
                )
            if info.file_size > max(RATIO_FLOOR, MAX_RATIO * info.compress_size):
                raise PipelineError(
                    f"{path}: {info.filename[:100]} inflates to {_megabytes(info.file_size)} "
                    f"from {_megabytes(info.compress_size)}, a compression no model file has; "
                    f"it was not read: {fix}"
                )
            total += info.file_size
        if total > max(limits.values(), default=default) + SMALL_MEMBER or total > max(
            RATIO_FLOOR, MAX_RATIO * size
        ):
            raise PipelineError(
                f"{path}: its members inflate to {_megabytes(total)} in all, from a file of "
                f"{_megabytes(size)}; it was not read: {fix}"
            )
        yield archive


def read_member(archive: zipfile.ZipFile, name: str, limit: int, fix: str) -> bytes:
    """A member of a ``bounded_zip`` archive, never more than ``limit`` bytes read, whatever
    its header says."""
    with archive.open(name) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise PipelineError(
            f"{archive.filename}: {name} holds more than {_megabytes(limit)}; it was not read: "
            f"{fix}"
        )
    return data


def check_file_size(path: str | Path, limit: int, fix: str) -> None:
    """Refuse a file larger than ``limit`` before it is read (a JSON state, a weights file)."""
    path = Path(path)
    size = path.stat().st_size
    if size > limit:
        raise PipelineError(
            f"{path} is {_megabytes(size)}, more than the {_megabytes(limit)} it may hold; "
            f"it was not read: {fix}"
        )


def _megabytes(size: int) -> str:
    if size < 1_000_000:
        return f"{size / 1e3:,.1f} KB"
    return f"{size / 1e6:,.1f} MB" if size < 10_000_000 else f"{size / 1e6:,.0f} MB"


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as partial:
        frame.to_csv(partial, index=False)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text)


def content_hash(path: str | Path) -> str:
    """MD5 of a file, or of a directory's relative paths and file contents.

    MLflow runs are tagged with the hashes of what they wrote, so a later stage can find
    the run that produced its exact inputs, even one from an earlier pipeline execution.
    """
    path = Path(path)
    digest = hashlib.md5()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
