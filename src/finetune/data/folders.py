"""Your own images: a folder with one sub-folder per class, the layout of
``keras.utils.image_dataset_from_directory``, fastai's and timm's image folders.

    photos/cat/001.jpg ...      one sub-folder per class; classes in sorted order
    photos/train/cat/... and photos/test/cat/...   the test split given, not held out

Files are read one at a time (see ``images``) into a file of rows, so a folder larger than
memory never has to fit in it. What is not an image by its name (``.DS_Store``, notes)
is ignored. A file that cannot be read as an image, a decompression bomb and a link that points
outside the folder are skipped, counted and named in the log. An empty class, a single class,
or a class left without training, validation or test images stops the stage with one line,
and so does a layout it would otherwise read wrong: a ``val/`` folder beside ``train/`` and
``test/``, a class present in only one of them, a class folder that is a link to another.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.finetune.data.images import UnreadableImage, files_under, is_image_name, read_image
from src.finetune.data.prepared import Rows
from src.finetune.errors import PipelineError
from src.finetune.model.labels import is_class_name

log = logging.getLogger(__name__)
SHOWN = 5  # file names a log line lists before it says "and N more"


@dataclass
class FolderScan:
    """The folder's classes and its image files by split (``all``, or ``train`` and ``test``)."""

    class_names: tuple[str, ...]
    files: dict[str, list[tuple[Path, int]]]
    ignored: list[Path] = field(default_factory=list)
    outside: list[Path] = field(default_factory=list)


def scan_folder(root: Path) -> FolderScan:
    """Find the classes and image files under ``root`` without opening any image."""
    if not root.is_dir():
        raise PipelineError(
            f"data.folder: {root} is not a folder; point it at a folder with one sub-folder "
            "per class"
        )
    split_dirs = {name: root / name for name in ("train", "test")}
    if all(path.is_dir() for path in split_dirs.values()):
        names = _class_names(split_dirs["train"])
        _check_split_layout(root, names, _class_names(split_dirs["test"]))
        scan = FolderScan(names, {})
        for split, path in split_dirs.items():
            scan.files[split] = _class_files(path, names, root, scan)
        return scan
    names = _class_names(root)
    scan = FolderScan(names, {})
    scan.files["all"] = _class_files(root, names, root, scan)
    return scan


VALIDATION_NAMES = ("val", "valid", "validation")


def _check_split_layout(root: Path, train: tuple[str, ...], test: tuple[str, ...]) -> None:
    """Refuse what a train/ and test/ layout would otherwise drop without a word."""
    for name in VALIDATION_NAMES:
        if (root / name).is_dir():
            raise PipelineError(
                f"{root / name} is a validation folder, which this pipeline does not read: it "
                "holds out data.val_split of train/ instead; move its images into train/ (or "
                "out of data.folder)"
            )
    others = sorted(
        p.name for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in ("train", "test")
    )  # fmt: skip
    if others:
        raise PipelineError(
            f"{root} holds train/ and test/, so its other folders ({', '.join(others)}) would "
            "be ignored; move their images into train/<class>/ or test/<class>/"
        )
    only_test, only_train = sorted(set(test) - set(train)), sorted(set(train) - set(test))
    if only_test:
        raise PipelineError(
            f"{root / 'test'}: the class(es) {', '.join(only_test)} have no training images; "
            f"add {root / 'train'}/<class>/ for each, or remove them from test/"
        )
    if only_train:
        raise PipelineError(
            f"{root / 'train'}: the class(es) {', '.join(only_train)} have no test images; "
            f"add {root / 'test'}/<class>/ for each, or remove them from train/"
        )


def _class_names(directory: Path) -> tuple[str, ...]:
    names = tuple(
        sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    for name in names:
        if not is_class_name(name):
            raise PipelineError(
                f"{directory}: the class folder name {name!r} is not printable UTF-8 text of "
                "at most 100 characters; rename it (the name is the class's label everywhere)"
            )
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise PipelineError(
            f"{directory} needs at least two class sub-folders to learn to tell apart (found "
            f"{found}); put each class's images in a sub-folder named after it"
        )
    return names


def _class_files(
    directory: Path, names: tuple[str, ...], root: Path, scan: FolderScan
) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    inside = root.resolve()
    seen: dict[Path, Path] = {}
    for label, name in enumerate(names):
        class_dir = directory / name
        if not _inside(class_dir, inside):
            raise PipelineError(
                f"{class_dir} is a link pointing outside {root}; copy or move the class's "
                "images into the folder, so that the folder (a DVC dependency) holds them"
            )
        target = class_dir.resolve()
        if target in seen:
            raise PipelineError(
                f"{class_dir} and {seen[target]} are the same folder (one links to the "
                "other), so two classes would hold the same images; remove the link"
            )
        seen[target] = class_dir
        found = 0
        for path in files_under(class_dir):
            if not _inside(path, inside):  # a link, inside a linked folder, or in a loop
                scan.outside.append(path)
            elif path.is_file() and is_image_name(path):
                files.append((path, label))
                found += 1
            elif path.is_file():
                scan.ignored.append(path)
        if not found:
            raise PipelineError(
                f"{class_dir} holds no images (.jpg, .png, .webp, .bmp, .gif); add some, or "
                "remove the folder to drop the class"
            )
    return files


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its links followed, lies under ``root`` (False for a link loop)."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11 and 3.12
        return False


@dataclass
class Ingested:
    """The images that could be read, as rows of a file, and the files that could not."""

    images: Rows
    labels: np.ndarray
    skipped: list[tuple[Path, str]]
    files: list[Path]  # the file of each row


def ingest(files: list[tuple[Path, int]], size: tuple[int, int], path: Path) -> Ingested:
    """Read every file into ``path`` (raw rows of uint8 RGB pixels), one at a time, written
    through the file so no image stays in memory; unreadable ones are skipped."""
    skipped: list[tuple[Path, str]] = []
    labels: list[int] = []
    read: list[Path] = []
    with path.open("wb") as pool:
        for index, (file, label) in enumerate(files):
            try:
                pool.write(read_image(file, size).tobytes())
            except UnreadableImage as problem:
                skipped.append((file, str(problem)))
                continue
            labels.append(label)
            read.append(file)
            if (index + 1) % 10_000 == 0:
                log.info("  read %d of %d images", index + 1, len(files))
    rows = Rows(path, 0, (len(labels), *size, 3), np.dtype(np.uint8))
    return Ingested(rows, np.asarray(labels, dtype=np.int64), skipped, read)


def report(scan: FolderScan, skipped: list[tuple[Path, str]], root: Path) -> list[str]:
    """Log lines for what was left out, each with a count and the first names."""

    def names(paths: list[Path]) -> str:
        shown = ", ".join(os.path.relpath(p, root) for p in paths[:SHOWN])
        return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")

    lines = []
    if skipped:
        reasons = "; ".join(f"{os.path.relpath(p, root)}: {why}" for p, why in skipped[:SHOWN]) + (
            f"; and {len(skipped) - SHOWN} more" if len(skipped) > SHOWN else ""
        )
        lines.append(f"skipped {len(skipped)} file(s) that are not readable images: {reasons}")
    if scan.outside:
        lines.append(
            f"skipped {len(scan.outside)} link(s) pointing outside {root} or in a loop: "
            f"{names(scan.outside)}"
        )
    if scan.ignored:
        lines.append(
            f"ignored {len(scan.ignored)} file(s) that are not images: {names(scan.ignored)}"
        )
    return lines
