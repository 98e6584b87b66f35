"""Stage 1: verify (downloading if needed) the CIFAR-10 archive and write train/val/test."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from src.finetune.data import (
    ensure_archive,
    read_archive,
    save_splits,
    split_validation,
    stratified_subset,
)
from src.finetune.errors import run_stage
from src.finetune.params import load_params
from src.finetune.tracking import repository_root, track_stage

STAGE = "prepare"
PARAMS = (
    "seed",
    "data.url",
    "data.archive",
    "data.sha256",
    "data.val_split",
    "data.train_limit",
    "data.test_limit",
)
log = logging.getLogger(STAGE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for the splits")
    args = parser.parse_args(argv)
    params = load_params()
    archive = repository_root() / params.data.archive
    ensure_archive(archive, params.data.url, params.data.sha256)

    with track_stage(STAGE, params, PARAMS) as tracker:
        cifar = read_archive(archive)
        rng = np.random.default_rng(params.seed)
        pool = stratified_subset(cifar.train, params.data.train_limit, rng)
        train, val = split_validation(pool, params.data.val_split, rng)
        test = stratified_subset(cifar.test, params.data.test_limit, rng)
        splits = {"train": train, "val": val, "test": test}
        save_splits(args.out, splits, cifar.class_names)
        sizes = {f"{name}_images": len(split) for name, split in splits.items()}
        log.info("wrote %s to %s", ", ".join(f"{v} {k}" for k, v in sizes.items()), args.out)
        tracker.log_results(sizes)
        tracker.record_outputs(args.out)


if __name__ == "__main__":
    run_stage(STAGE, main)
