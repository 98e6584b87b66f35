"""Every data source prepared the same way: stratified, seeded splits on disk.

A CIFAR archive is small enough to split in memory. A folder of images may not be: its images
are read once into a memory-mapped pool, the splits are chosen from the labels alone, and
each split is copied out of the pool a chunk at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from src.finetune.archives import Archive, read_archive
from src.finetune.data import (
    DataInfo,
    Split,
    at_most,
    check_every_class_in_every_split,
    save_info,
    save_split,
    split_validation,
    stratified_indices,
    stratified_subset,
    write_array,
)
from src.finetune.folders import Ingested, ingest, report, scan_folder
from src.finetune.params import DataParams

HINT = "add images of that class, or lower data.val_split / data.test_split or raise the limits"
log = logging.getLogger(__name__)


def prepare_archive(
    archive: Path, official: Archive, data: DataParams, rng: np.random.Generator, out: Path
) -> dict[str, int]:
    """Hold a stratified validation split out of the archive's training images."""
    dataset = read_archive(archive, official)
    pool = stratified_subset(dataset.train, data.train_limit, rng)
    train, val = split_validation(pool, data.val_split, rng)
    test = stratified_subset(dataset.test, data.test_limit, rng)
    splits = {"train": train, "val": val, "test": test}
    check_every_class_in_every_split(splits, dataset.class_names, HINT)
    for name, split in splits.items():
        save_split(out, name, split.images, split.labels)
    save_info(out, DataInfo(dataset.class_names, data.source, train.images.shape[1:]))
    return {f"{name}_images": len(split) for name, split in splits.items()}


def prepare_folder(
    folder: Path, data: DataParams, rng: np.random.Generator, out: Path
) -> dict[str, int]:
    """Read the folder's images into pools on disk, then write each split from them."""
    scan = scan_folder(folder)
    size, classes = (data.image_size, data.image_size), len(scan.class_names)
    total = sum(len(files) for files in scan.files.values())
    log.info("reading %d image files of %d classes from %s at %dx%d", total, classes, folder, *size)
    out.mkdir(parents=True, exist_ok=True)
    pools: dict[str, Ingested] = {}
    for part, files in scan.files.items():
        pools[part] = ingest(files, size, out / f".{part}_pool")
    skipped = [item for pool in pools.values() for item in pool.skipped]
    for line in report(scan, skipped, folder):
        log.warning("%s", line)

    if "all" in pools:  # no test/ sub-folder: hold the test images out of each class
        test_idx, train_idx = stratified_indices(pools["all"].labels, data.test_split, rng)
        train_pool = test_pool = pools["all"]
    else:
        train_pool, test_pool = pools["train"], pools["test"]
        train_idx, test_idx = np.arange(len(train_pool.labels)), np.arange(len(test_pool.labels))
    train_idx = train_idx[at_most(train_pool.labels[train_idx], data.train_limit, rng)]
    test_idx = test_idx[at_most(test_pool.labels[test_idx], data.test_limit, rng)]
    val, train = stratified_indices(train_pool.labels[train_idx], data.val_split, rng)
    chosen = {
        "train": (train_pool, train_idx[train]),
        "val": (train_pool, train_idx[val]),
        "test": (test_pool, test_idx),
    }
    labels = {name: Split(None, pool.labels[i], classes) for name, (pool, i) in chosen.items()}
    check_every_class_in_every_split(labels, scan.class_names, HINT)
    for name, (pool, indices) in chosen.items():
        write_array(out / f"{name}_images.npy", pool.images, indices)
        write_array(out / f"{name}_labels.npy", pool.labels, indices)
    for pool in pools.values():
        pool.images.path.unlink()
    save_info(out, DataInfo(scan.class_names, data.source, (*size, 3)))
    return {f"{name}_images": len(indices) for name, (_, indices) in chosen.items()}
