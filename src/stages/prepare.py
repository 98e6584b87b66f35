"""Stage 1: read the images (a verified CIFAR archive, downloaded if needed, or your folder)
and write stratified, seeded train / validation / test splits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from src.finetune.data.checks import DataChecks, check_splits
from src.finetune.data.prepared import load_info, load_split
from src.finetune.data.sources import SOURCES
from src.finetune.environment import repository_root
from src.finetune.files import atomic_dir, atomic_path
from src.finetune.params import load_params
from src.stages.declaration import File, Log, Stage

STAGE = Stage(
    name="prepare",
    doc=__doc__,
    params=("seed", "data"),
    outputs={
        "out": File("data/prepared", "directory for the splits"),
        "checks": File("reports/data_checks.json", "data checks JSON to write", Log.STAGE),
    },
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
        # The splits and their checks appear together, or not at all.
        with atomic_dir(paths.out) as out, atomic_path(paths.checks) as checks_path:
            sizes = source.prepare(params.data, root, rng, out)
            log.info("wrote %s", ", ".join(f"{v} {k}" for k, v in sizes.items()))
            checks = check_prepared(out)
            checks_path.write_text(checks.model_dump_json(indent=2) + "\n")
        tracker.log_results(sizes)
        STAGE.record(tracker, paths)


def check_prepared(out: Path) -> DataChecks:
    """Duplicates and class balance of the splits just written, said in the log."""
    log.info("checking the splits for duplicates and imbalance")
    splits = {name: load_split(out, name) for name in ("train", "val", "test")}
    checks = check_splits(splits, load_info(out).class_names)
    per_class = checks.per_class["train"].items()
    log.info("training images per class: %s", ", ".join(f"{n} {c}" for n, c in per_class))
    for finding in checks.duplicates:
        where = finding.a if finding.a == finding.b else f"{finding.a} and {finding.b}"
        log.info("%s duplicates in %s: %d pair(s)", finding.kind, where, finding.pairs)
    for warning in checks.warnings:
        log.warning(warning)
    return checks


if __name__ == "__main__":
    STAGE.run(main)
