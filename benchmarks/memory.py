"""Peak memory of `prepare` and of a training epoch on image folders of growing size: it must
not grow with the number of images.

    make bench-memory     # python -m benchmarks.memory [--counts 10000 100000]

For each count, a folder of that many generated PNG files (10 classes, 32x32) is written,
then, in a scratch copy of the project, each stage process alone, with the command dvc.yaml
gives it (DVC's own process, hashing the folder, is not measured): `prepare`
(`data.source: folder`) and `phase1_extract` for one epoch streamed through the whole model
(`phase1.cache_features: false`: the cache would hold 5 KB per image by design). Prints one
JSON line per count and writes reports/memory.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from ruamel.yaml import YAML

from benchmarks.benchmark import ROOT, measure, write_params
from src.finetune.files import write_json
from workbench.projects import copy_files

PROJECT = ("src", "dvc.yaml", "params.yaml", "data/images/README.md")
CLASSES = 10


def generated_folder(root: Path, count: int) -> None:
    """``count`` small PNG files in ten class sub-folders, each image its own noise."""
    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % CLASSES
        pixels = rng.integers(0, 64, (32, 32, 3), dtype=np.uint8) + np.uint8(16 * label)
        path = root / f"class_{label}" / f"{index:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, compress_level=1)


def stage_command(stage: str) -> list[str]:
    """The stage's command in dvc.yaml, run by this Python."""
    pipeline = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
    return [sys.executable, *shlex.split(pipeline["stages"][stage]["cmd"])[1:]]


def run(count: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="finetune-memory-"))
    copy_files(PROJECT, ROOT, workdir)
    generated_folder(workdir / "data/images", count)
    write_params(
        workdir,
        {
            "data.source": "folder",
            "model.weights": "none",
            "phase1.epochs": 1,
            "phase1.cache_features": False,
        },
    )
    prepare = measure(stage_command("prepare"), workdir)
    epoch = measure(stage_command("phase1_extract"), workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "images": count,
        "prepare_peak_rss_mb": prepare["peak_rss_mb"],
        "prepare_wall_s": prepare["wall_s"],
        "training_epoch_peak_rss_mb": epoch["peak_rss_mb"],
        "training_epoch_wall_s": epoch["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path, default=ROOT / "reports/memory.json")
    args = parser.parse_args()
    rows = []
    for count in args.counts:
        rows.append(run(count))
        print(json.dumps(rows[-1]), flush=True)
    write_json(args.out, {"folders": rows})


if __name__ == "__main__":
    main()
