"""CIFAR-10 and CIFAR-100: the official python archive, downloaded if missing and verified,
with a stratified validation split held out of its training images. Small enough to split in
memory. Reads data.url, data.archive and data.sha256 (null: the official ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.finetune.data.archives import Archive, ensure_archive, read_archive
from src.finetune.data.prepared import save_info, save_split
from src.finetune.data.splits import (
    DataInfo,
    check_every_class_in_every_split,
    split_validation,
    stratified_subset,
)
from src.finetune.params import DataParams


def archive_path(official: Archive, data: DataParams, root: Path) -> Path:
    return root / (data.archive or f"data/raw/{official.filename}")


def fetch_archive(official: Archive, data: DataParams, root: Path) -> None:
    """Download the archive if it is missing, and check its digest."""
    ensure_archive(
        archive_path(official, data, root),
        data.url or official.url,
        data.sha256 or official.sha256,
        official,
    )


def prepare_archive(
    official: Archive, data: DataParams, root: Path, rng: np.random.Generator, out: Path
) -> dict[str, int]:
    """Hold a stratified validation split out of the archive's training images."""
    dataset = read_archive(archive_path(official, data, root), official)
    pool = stratified_subset(dataset.train, data.train_limit, rng)
    train, val = split_validation(pool, data.val_split, rng)
    test = stratified_subset(dataset.test, data.test_limit, rng)
    splits = {"train": train, "val": val, "test": test}
    check_every_class_in_every_split(splits, dataset.class_names)
    for name, split in splits.items():
        save_split(out, name, split.images, split.labels)
    save_info(out, DataInfo(dataset.class_names, data.source, train.images.shape[1:]))
    return {f"{name}_images": len(split) for name, split in splits.items()}
