"""Time and peak memory of `prepare`'s duplicate check as the images grow: near linear, even
when every image is a near duplicate of every other.

    make bench-memory      # runs this too; alone: python -m benchmarks.duplicates

For each count (10,000, 30,000, 100,000 images of 32x32 in the training split, a tenth of
that in validation and in test), two kinds of data: ``distinct`` (each image its own smooth
pattern) and ``alike`` (one flat grey, each image with two pixels of its own: every image's
perceptual hash the same, the worst case for a pairwise check). Each count and kind runs the
check alone in a process of its own (`data.checks.find_duplicates` on memory-mapped splits,
as `prepare` reads them). Writes reports/duplicates.json and prints its table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.benchmark import ROOT, measure
from src.finetune.files import write_json

COUNTS = (10_000, 30_000, 100_000)
KINDS = ("distinct", "alike")


def images(count: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "distinct":  # a 4x4 random pattern, smoothly upscaled: its own hash each
        small = rng.integers(0, 256, (count, 4, 4, 3), dtype=np.uint8)
        return np.repeat(np.repeat(small, 8, axis=1), 8, axis=2)
    out = np.full((count, 32, 32, 3), 120, np.uint8)
    index = np.arange(count)
    out[index, index // 32 % 32, index % 32, 0] = 121
    out[index, 31, index // 1024 % 32, 1] = 121 + index // 32768
    return out


def check_one(count: int, kind: str, folder: Path) -> dict:
    """Write the splits as `prepare` does, then time the check on them (in this process)."""
    import time

    from src.finetune.data.checks import find_duplicates
    from src.finetune.data.prepared import load_split, save_info, save_split
    from src.finetune.data.splits import DataInfo

    save_info(folder, DataInfo(("a", "b"), "folder", (32, 32, 3)))
    for seed, (name, share) in enumerate((("train", 1.0), ("val", 0.1), ("test", 0.1))):
        n = int(count * share)
        save_split(folder, name, images(n, kind, seed), np.arange(n) % 2)
    splits = {name: load_split(folder, name) for name in ("train", "val", "test")}
    started = time.monotonic()
    found = find_duplicates(splits)
    return {
        "check_s": round(time.monotonic() - started, 1),
        "pairs": sum(len(pairs.pairs) for pairs in found),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    parser.add_argument("--out", type=Path, default=ROOT / "reports/duplicates.json")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # COUNT KIND FOLDER
    args = parser.parse_args(argv)
    if args.one:
        count, kind, folder = args.one
        print(json.dumps(check_one(int(count), kind, Path(folder))))
        return
    rows = []
    for count in args.counts:
        for kind in KINDS:
            with tempfile.TemporaryDirectory(prefix="finetune-duplicates-") as folder:
                command = [sys.executable, "-m", "benchmarks.duplicates", "--one", str(count),
                           kind, folder]  # fmt: skip
                measured = measure(command, ROOT, keep_output=True)
                result = json.loads(measured.pop("output").strip().splitlines()[-1])
            rows.append({"images": count, "kind": kind, **result, **measured})
            print(json.dumps(rows[-1]), flush=True)
    write_json(args.out, {"checks": rows})
    print("| training images | kind | check (s) | whole process (s) | peak memory (MB) | pairs |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['images']:,} | {row['kind']} | {row['check_s']} | {row['wall_s']} "
              f"| {row['peak_rss_mb']} | {row['pairs']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
