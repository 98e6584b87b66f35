"""Stage 1: read the images (a verified CIFAR archive, downloaded if needed, or your folder)
and write stratified, seeded train / validation / test splits."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from src.finetune.archives import ARCHIVES, ensure_archive
from src.finetune.errors import run_stage
from src.finetune.files import atomic_dir
from src.finetune.params import load_params
from src.finetune.sources import prepare_archive, prepare_folder
from src.finetune.tracking import repository_root, track_stage

STAGE = "prepare"
PARAMS = ("seed", "data")
log = logging.getLogger(STAGE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for the splits")
    args = parser.parse_args(argv)
    params = load_params()
    data, root = params.data, repository_root()
    official = ARCHIVES.get(data.source)
    if official:
        archive = root / (data.archive or f"data/raw/{official.filename}")
        ensure_archive(archive, data.url or official.url, data.sha256 or official.sha256, official)

    with track_stage(STAGE, params, PARAMS) as tracker:
        rng = np.random.default_rng(params.seed)
        with atomic_dir(args.out) as out:  # the splits appear together, or not at all
            if official:
                sizes = prepare_archive(archive, official, data, rng, out)
            else:
                sizes = prepare_folder(root / data.folder, data, rng, out)
        log.info("wrote %s to %s", ", ".join(f"{v} {k}" for k, v in sizes.items()), args.out)
        tracker.log_results(sizes)
        tracker.record_outputs(args.out)


if __name__ == "__main__":
    run_stage(STAGE, main)
