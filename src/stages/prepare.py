"""Stage 1: read the images (a verified CIFAR archive, downloaded if needed, or your folder)
and write stratified, seeded train / validation / test splits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from src.finetune.data.checks import SPLITS, DataChecks, check_splits, find_duplicates, to_remove
from src.finetune.data.prepared import (
    load_files,
    load_info,
    load_split,
    save_files,
    save_split,
)
from src.finetune.data.sources import SOURCES
from src.finetune.data.splits import Split, check_every_class_in_every_split
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
            checks = check_prepared(out, params.data.dedupe)
            checks_path.write_text(checks.model_dump_json(indent=2) + "\n")
        tracker.log_results(sizes)
        STAGE.record(tracker, paths)


def check_prepared(out: Path, dedupe: bool) -> DataChecks:
    """Duplicates and class balance of the splits just written, said in the log; with
    ``dedupe`` the later copy of each duplicate is dropped first."""
    log.info("checking the splits for duplicates and imbalance")
    info, files = load_info(out), load_files(out)
    splits = {name: load_split(out, name) for name in SPLITS}
    found, removed = find_duplicates(splits), {}
    drop = to_remove(found) if dedupe else {}
    if any(drop.values()):
        removed = {name: len(indices) for name, indices in drop.items() if indices}
        splits = without(out, splits, drop, info.class_names)
        if files:
            files = {n: [f for i, f in enumerate(files[n]) if i not in drop[n]] for n in SPLITS}
            save_files(out, files)
        log.info("data.dedupe: removed %s", ", ".join(f"{n} from {s}" for s, n in removed.items()))
        found = find_duplicates(splits)
    checks = check_splits(splits, info.class_names, files, removed=removed, found=found)
    per_class = checks.per_class["train"].items()
    log.info("training images per class: %s", ", ".join(f"{n} {c}" for n, c in per_class))
    for finding in checks.duplicates:
        where = finding.a if finding.a == finding.b else f"{finding.a} and {finding.b}"
        log.info("%s duplicates in %s: %d pair(s)", finding.kind, where, finding.pairs)
    for warning in checks.warnings:
        log.warning(warning)
    return checks


def without(
    out: Path, splits: dict[str, Split], drop: dict[str, set[int]], class_names: tuple[str, ...]
) -> dict[str, Split]:
    """The splits rewritten in ``out`` without the images ``drop`` names."""
    kept = {}
    for name, split in splits.items():
        keep = np.setdiff1d(np.arange(len(split)), sorted(drop[name]))
        kept[name] = Split(np.asarray(split.images[keep]), split.labels[keep], split.classes)
    check_every_class_in_every_split(kept, class_names)
    for name, split in kept.items():
        if drop[name]:
            save_split(out, name, split.images, split.labels)
    return {name: load_split(out, name) for name in SPLITS}


if __name__ == "__main__":
    STAGE.run(main)
