"""Stage 1: read the images (a verified CIFAR archive, downloaded if needed, or your folder)
and write stratified, seeded train / validation / test splits."""

from __future__ import annotations

import logging

import numpy as np

from src.finetune.data.prepared import load_info, load_split
from src.finetune.data.sources import SOURCES
from src.finetune.data.splits import imbalance
from src.finetune.environment import repository_root
from src.finetune.files import atomic_dir
from src.finetune.params import load_params
from src.stages.declaration import File, Stage

STAGE = Stage(
    name="prepare",
    doc=__doc__,
    params=("seed", "data"),
    outputs={"out": File("data/prepared", "directory for the splits")},
)
log = logging.getLogger(STAGE.name)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    params = load_params()
    source, root = SOURCES[params.data.source], repository_root()
    log.info("data: %s", ", ".join(f"{k}={v}" for k, v in params.data.read_by_source().items()))
    source.fetch(params.data, root)

    with STAGE.tracked(params, paths) as tracker:
        rng = np.random.default_rng(params.seed)
        with atomic_dir(paths.out) as out:  # the splits appear together, or not at all
            sizes = source.prepare(params.data, root, rng, out)
        log.info("wrote %s to %s", ", ".join(f"{v} {k}" for k, v in sizes.items()), paths.out)
        train, info = load_split(paths.out, "train"), load_info(paths.out)
        counts = np.bincount(train.labels, minlength=info.classes)
        per_class = zip(info.class_names, counts, strict=True)
        log.info("training images per class: %s", ", ".join(f"{n} {c}" for n, c in per_class))
        if warning := imbalance(train.labels, info.class_names):
            log.warning(warning)
        tracker.log_results(sizes)
        STAGE.record(tracker, paths)


if __name__ == "__main__":
    STAGE.run(main)
