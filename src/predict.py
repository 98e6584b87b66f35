"""Predict the classes of image files with a trained model; CSV on standard output.

    python -m src.predict --model models/phase2.keras photo.jpg more/photos/ [--top-k 3]
    python -m src.predict --model models/export/model.onnx photo.jpg
    python -m src.predict --model models/phase2.keras --request photo.jpg > request.json

The model is a ``.keras`` checkpoint, or an export (``.onnx``, ``.tflite``, a SavedModel
folder), each run in its own runtime. Each image is read as the pipeline reads a folder of
images (any size and mode, see ``src/finetune/data/images.py``) at the model's input size.
Folders are searched for image files. One row per image (``--top-k`` rows with ``--top-k``):
``path,label,probability``, labels by class name from the model itself. A file that cannot be
read gets a line on standard error and the others are still predicted; the exit code is then 1.

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
from scipy.special import softmax

from src.finetune.data.images import UnreadableImage, files_under, is_image_name, read_image
from src.finetune.entrypoint import run_process
from src.finetune.errors import PipelineError
from src.finetune.export.runtimes import LoadedModel, Runtime, open_model

BATCH = 256
NAME = "predict"


def image_files(paths: list[Path]) -> Iterator[Path]:
    """The files given, and the image files under the folders given, sorted."""
    for path in paths:
        if path.is_dir():
            yield from (p for p in files_under(path) if is_image_name(p) and not p.is_dir())
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
    parser.add_argument("paths", type=Path, nargs="*", help="image files or folders")
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        help="models/phase2.keras, or an export: models/export/model.onnx, model.tflite, ...",
    )
    parser.add_argument("--top-k", type=int, default=1, help="rows per image, most likely first")
    parser.add_argument(
        "--request", action="store_true", help="print an MLflow serving request instead"
    )
    args, unknown = parser.parse_known_args(argv)
    args.paths += files_named_like_options(parser, unknown)
    if not args.paths:
        parser.error("give at least one image file or folder")
    loaded = open_model(args.model)
    class_names = checked_labels(args.model, loaded)
    if not 1 <= args.top_k <= len(class_names):
        raise PipelineError(f"--top-k: {args.top_k} is not in 1..{len(class_names)}")
    images = ReadableImages(args.paths, tuple(loaded.runtime.input_shape[:2]))
    if args.request:
        # float pixels: the signature of the logged model takes float32 tensors
        pixels = [pixel.astype("float32").tolist() for _, pixel in images]
        json.dump({"inputs": pixels}, sys.stdout)
        print()
    else:
        predict(loaded.runtime, images, class_names, args.top_k)
    if images.failed:
        sys.exit(1)


def files_named_like_options(parser: argparse.ArgumentParser, unknown: list[str]) -> list[Path]:
    """The files among the arguments argparse took for unknown options (``-x.png``, a name
    starting with a dash); anything else is the usual usage error."""
    files = [Path(argument) for argument in unknown if Path(argument).exists()]
    others = [argument for argument in unknown if not Path(argument).exists()]
    if others:
        parser.error(
            f"unrecognized arguments: {' '.join(others)} (a file named so? it does not exist)"
        )
    return files


def checked_labels(path: Path, loaded: LoadedModel) -> tuple[str, ...]:
    """The model's class names, once they agree with what the model is: an image classifier
    with one output per name."""
    shape, names = loaded.runtime.input_shape, loaded.class_names
    if len(shape) != 3 or shape[2] not in (1, 3) or not all(isinstance(d, int) for d in shape):
        raise PipelineError(
            f"{path} takes inputs of shape {shape}, not images (height, width, 1 or 3 "
            "channels); give a model this pipeline trained or exported"
        )
    if names is None:
        raise PipelineError(
            f"{path} holds no class names (a model from before they travelled with it, or "
            "not this pipeline's); rebuild it with dvc repro"
        )
    if loaded.runtime.outputs != len(names):
        raise PipelineError(
            f"{path} has {loaded.runtime.outputs} outputs but names {len(names)} classes; "
            "the file is damaged or was edited: rebuild it with dvc repro"
        )
    return names


def predict(
    runtime: Runtime, images: ReadableImages, class_names: tuple[str, ...], top_k: int
) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["path", "label", "probability"])
    said = False
    for batch in batched(images):
        rows = runtime.predict(np.stack([p for _, p in batch]).astype("float32"))
        if not is_probabilities(rows):
            rows = softmax(rows, axis=1)
            if not said:
                print(f"warning: {NAME}: the model outputs logits, not probabilities; the "
                      "probabilities printed are their softmax", file=sys.stderr)  # fmt: skip
                said = True
        for (path, _), row in zip(batch, rows, strict=True):
            for index in np.argsort(-row, kind="stable")[:top_k]:
                writer.writerow([str(path), class_names[index], f"{row[index]:.6f}"])
        sys.stdout.flush()


def is_probabilities(rows: np.ndarray) -> bool:
    """Rows of values in 0..1 that sum to 1, as a softmax output is (within the rounding of
    an int8 model's output, 1/256 a class)."""
    in_range = bool((rows >= 0).all() and (rows <= 1).all())
    return in_range and bool(np.allclose(rows.sum(axis=1), 1.0, atol=0.05))


if __name__ == "__main__":
    run_process(NAME, main)
