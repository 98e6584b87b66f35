"""Your own images: a folder with one sub-folder per class (see ``data.folders``), or
``train/`` and ``test/`` sub-folders holding them. Its images are read once into a
memory-mapped pool, the splits are chosen from the labels alone, and each split is copied out
of the pool a chunk at a time: a folder larger than memory never has to fit in it. Reads
data.folder and data.test_split."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from src.finetune.data.folders import Ingested, ingest, report, scan_folder
from src.finetune.data.prepared import save_files, save_info, write_array
from src.finetune.data.splits import (
    DataInfo,
    Split,
    at_most,
    check_every_class_in_every_split,
    stratified_indices,
)
from src.finetune.params import DataParams

log = logging.getLogger(__name__)


def fetch_nothing(data: DataParams, root: Path) -> None:
    """The images are in the repository already (a DVC dependency of ``prepare``)."""


def prepare_folder(
    data: DataParams, root: Path, rng: np.random.Generator, out: Path
) -> dict[str, int]:
    """Read the folder's images into pools on disk, then write each split from them."""
    folder = root / data.folder
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
    labels = {name: Split(np.zeros((0,)), pool.labels[i], classes)
              for name, (pool, i) in chosen.items()}  # fmt: skip
    check_every_class_in_every_split(labels, scan.class_names)
    for name, (pool, indices) in chosen.items():
        write_array(out / f"{name}_images.npy", pool.images, indices)
        write_array(out / f"{name}_labels.npy", pool.labels, indices)
    for pool in pools.values():
        pool.images.path.unlink()
    save_info(out, DataInfo(scan.class_names, data.source, (*size, 3)))
    save_files(out, {name: [os.path.relpath(pool.files[i], root) for i in indices]
                     for name, (pool, indices) in chosen.items()})  # fmt: skip
    return {f"{name}_images": len(indices) for name, (_, indices) in chosen.items()}
