"""Which backbone for which budget, the part training does not change: each EfficientNet-Lite's
parameters, the size of its int8 LiteRT file and that file's latency per image on this
machine's CPU, at the image size a recipe trains at.

    make bench-backbones     # python -m benchmarks.backbones [--image-size 48]

Each network is the product's own (``build_model``: ImageNet weights, the head for 10
classes), exported by the export stage's int8 conversion (``quantized_litert``, calibrated on
Fashion-MNIST training photos) and timed by its checks (``latency_ms``: median of 30 calls at
batch 1, of 5 at batch 32, after a warm-up call), the median of 7 such measurements taken in
turn. A file's size and its latency depend on the network and the image size, not on the
values of the weights, so fine-tuning would change neither: accuracy and time per run of each
backbone come from ``reports/quality.json`` (``recipe:fashion@efficientnetlite1`` and so on).
Time it with nothing else running.

Writes reports/backbones.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.benchmark import ROOT
from benchmarks.quality import mean_cell, recipe_row
from src.finetune.files import write_json

LITE = ("efficientnetlite0", "efficientnetlite1", "efficientnetlite2")
CLASSES = 10
ROUNDS = 7  # latency measurements a file, the median kept
CALIBRATION_IMAGES = 200  # params.yaml's export.calibration_images
OUT = ROOT / "reports/backbones.json"


def calibration_photos(image_size: int, count: int) -> np.ndarray:
    """``count`` Fashion-MNIST training photos as the prepared splits hold them: RGB, resized
    to ``image_size``, 0-255 floats."""
    from PIL import Image

    from workbench import fashion_mnist

    images, _ = fashion_mnist.split("train")
    chosen = np.random.default_rng(0).permutation(len(images))[:count]
    resized = [
        np.asarray(Image.fromarray(images[i]).convert("RGB").resize((image_size, image_size)))
        for i in np.sort(chosen)
    ]
    return np.stack(resized).astype(np.float32)


def int8_file(name: str, image_size: int, calibration: np.ndarray, folder: Path,
              weights: str | None) -> tuple[Path, int]:  # fmt: skip
    """One backbone built as the pipeline builds it and written as int8 LiteRT into
    ``folder``; the file and the network's parameter count."""
    from src.finetune.export.formats import quantized_litert, without_normalization_layers
    from src.finetune.model.backbones import BACKBONES
    from src.finetune.model.network import build_model

    shape = (image_size, image_size, 3)
    model = build_model(BACKBONES[name], weights, 0.2, image_size, shape, CLASSES)
    path = folder / f"{name}.tflite"
    path.write_bytes(quantized_litert(without_normalization_layers(model), calibration))
    return path, model.count_params()


def measure(
    names: list[str],
    image_size: int,
    calibration: np.ndarray,
    rounds: int = ROUNDS,
    weights: str | None = "imagenet",
) -> list[dict[str, Any]]:
    """Each backbone's int8 file, its size and its latency per image: the median of
    ``rounds`` measurements (each the export checks' own), the files timed in turn in each
    round so that a change in the machine's speed reaches them all alike."""
    from src.finetune.export.checks import BATCH, latency_ms, size_mb
    from src.finetune.export.runtimes import LiteRtRuntime

    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for name in names:
            print(f"{name} at {image_size} px: int8 export", flush=True)
            files[name] = int8_file(name, image_size, calibration, Path(folder), weights)
        runtimes = {name: LiteRtRuntime(path) for name, (path, _) in files.items()}
        timings: dict[str, dict[int, list[float]]] = {n: {1: [], BATCH: []} for n in names}
        for _ in range(rounds):
            for name, runtime in runtimes.items():
                for batch, measured in timings[name].items():
                    measured.append(latency_ms(runtime, calibration, batch))
        return [
            {
                "backbone": name,
                "parameters": parameters,
                "int8_size_mb": size_mb(path),
                **{
                    f"int8_latency_ms_batch{batch}": round(statistics.median(measured), 3)
                    for batch, measured in timings[name].items()
                },
            }
            for name, (path, parameters) in files.items()
        ]


def by_backbone(table: dict[str, Any], recipe: str) -> dict[str, dict[str, Any]]:
    """A data set's rows of ``recipe`` (``recipe:<recipe>`` and ``recipe:<recipe>@<backbone>``)
    by the backbone they trained."""
    rows = {}
    for row, result in table.items():
        if (parsed := recipe_row(row)) and parsed[0] == recipe:
            rows[result["params"]["model.backbone"]] = result
    return rows


def markdown(quality: dict[str, Any], measured: dict[str, Any], dataset: str, recipe: str) -> str:
    """Per backbone: the recipe's accuracy (validation, then test) and time per run from
    ``quality`` (reports/quality.json), beside its size and int8 latency from ``measured``
    (reports/backbones.json). A backbone missing from either shows n/a there."""
    trained = by_backbone(quality["datasets"].get(dataset, {}), recipe)
    exported = {row["backbone"]: row for row in measured["backbones"]}
    lines = [
        f"`recipe:{recipe}` on {dataset}; int8 LiteRT at {measured['image_size']} px on "
        f"{measured['machine']}",
        "",
        "| backbone | seeds | val (fine-tuned) | test: fine-tuned | with TTA | time per run "
        "| parameters | int8 file | int8 latency, batch 1 | batch 32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in sorted(set(trained) | set(exported)):
        result, export = trained.get(name), exported.get(name)
        cells = ["n/a"] * 5
        if result:
            accuracies = ("finetuned_val_accuracy", "finetuned_accuracy", "finetuned_accuracy_tta")
            cells = [str(result["seeds"]), *(mean_cell(result, key) for key in accuracies),
                     f"{result['wall_s'] / 60:.1f} min"]  # fmt: skip
        cells += ["n/a"] * 4
        if export:
            cells[5:] = [f"{export['parameters'] / 1e6:.1f} M", f"{export['int8_size_mb']:.1f} MB",
                         f"{export['int8_latency_ms_batch1']:.2f} ms",
                         f"{export['int8_latency_ms_batch32']:.2f} ms"]  # fmt: skip
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-size", type=int, default=48, help="as recipes/fashion.yaml")
    parser.add_argument("--backbones", nargs="+", default=list(LITE), choices=LITE)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="latency measurements a file")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the backbone table of --out and reports/quality.json, and stop",
    )
    parser.add_argument("--dataset", default="fashion-mnist-1000", help="the table's data set")
    parser.add_argument("--recipe", default="fashion", help="the table's recipe")
    args = parser.parse_args(argv)
    if args.table:
        if not args.out.is_file():
            raise SystemExit(f"error: bench-backbones: {args.out} not found; run it first")
        quality = json.loads((ROOT / "reports/quality.json").read_text())
        print(markdown(quality, json.loads(args.out.read_text()), args.dataset, args.recipe))
        return
    from src.finetune.entrypoint import quiet_libraries, quiet_tensorflow
    from workbench import fashion_mnist

    quiet_tensorflow()  # the converter's notices, as the export stage keeps them out
    quiet_libraries()

    try:
        calibration = calibration_photos(args.image_size, CALIBRATION_IMAGES)
    except fashion_mnist.Missing as missing:
        raise SystemExit(f"error: bench-backbones: {missing}") from None
    rows = measure(args.backbones, args.image_size, calibration, args.rounds)
    for row in rows:
        print(f"  {row}", flush=True)
    write_json(args.out, {
        "image_size": args.image_size,
        "classes": CLASSES,
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
        "backbones": rows,
    })  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
