"""Predict the classes of image files with a trained checkpoint; CSV on standard output.

    python -m src.predict --model models/phase2.keras photo.jpg more/photos/ [--top-k 3]
    python -m src.predict --model models/phase2.keras --request photo.jpg > request.json

Each image is read as the pipeline reads a folder of images (any size and mode, see
``src/finetune/data/images.py``) at the checkpoint's input size. Folders are searched for image
files. One row per image (``--top-k`` rows with ``--top-k``): ``path,label,probability``, labels
by class name from ``classes.json`` beside the prepared splits. A file that cannot be read gets
a line on standard error and the others are still predicted; the exit code is then 1.

``--request`` prints instead the JSON body that ``mlflow models serve`` answers with class
probabilities (see README: "Predictions").
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from src.finetune.data.images import UnreadableImage, is_image_name, read_image
from src.finetune.data.prepared import load_info
from src.finetune.entrypoint import run_stage
from src.finetune.errors import PipelineError

BATCH = 256
NAME = "predict"


def image_files(paths: list[Path]) -> Iterator[Path]:
    """The files given, and the image files under the folders given, sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
        else:
            yield path


class ReadableImages:
    """(path, pixels) of each file that reads as an image; a line on stderr for the others,
    which are remembered in ``failed``."""

    def __init__(self, paths: list[Path], size: tuple[int, int]) -> None:
        self.paths, self.size = paths, size
        self.failed: list[Path] = []

    def __iter__(self) -> Iterator[tuple[Path, np.ndarray]]:
        for path in image_files(self.paths):
            try:
                yield path, read_image(path, self.size)
            except (UnreadableImage, OSError) as problem:
                reason = getattr(problem, "strerror", None) or problem
                print(f"error: {NAME}: {path}: {reason}; skipped", file=sys.stderr)
                self.failed.append(path)


def batched(items: Iterator[tuple[Path, np.ndarray]]) -> Iterator[list[tuple[Path, np.ndarray]]]:
    batch: list[tuple[Path, np.ndarray]] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="+", help="image files or folders")
    parser.add_argument(
        "--model", type=Path, required=True, help="a checkpoint, e.g. models/phase2.keras"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data/prepared"),
        help="prepared splits (for classes.json)",
    )
    parser.add_argument("--top-k", type=int, default=1, help="rows per image, most likely first")
    parser.add_argument(
        "--request", action="store_true", help="print an MLflow serving request instead"
    )
    args = parser.parse_args(argv)
    class_names = load_info(args.data).class_names
    if not 1 <= args.top_k <= len(class_names):
        raise PipelineError(f"--top-k: {args.top_k} is not in 1..{len(class_names)}")
    from src.finetune.model.checkpoints import load_checkpoint

    model = load_checkpoint(args.model, made_by="phase2_finetune")
    images = ReadableImages(args.paths, tuple(model.inputs[0].shape[1:3]))
    if args.request:
        # float pixels: the signature of the logged model takes float32 tensors
        pixels = [pixel.astype("float32").tolist() for _, pixel in images]
        json.dump({"inputs": pixels}, sys.stdout)
        print()
    else:
        predict(model, images, class_names, args.top_k)
    if images.failed:
        sys.exit(1)


def predict(model, images: ReadableImages, class_names: tuple[str, ...], top_k: int) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["path", "label", "probability"])
    for batch in batched(images):
        probabilities = model.predict(np.stack([p for _, p in batch]).astype("float32"), verbose=0)
        for (path, _), row in zip(batch, probabilities, strict=True):
            for index in np.argsort(-row, kind="stable")[:top_k]:
                writer.writerow([str(path), class_names[index], f"{row[index]:.6f}"])
        sys.stdout.flush()


if __name__ == "__main__":
    run_stage(NAME, main)
