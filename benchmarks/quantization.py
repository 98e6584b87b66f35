"""What int8 costs: the demo's fine-tuned model quantised with its input scaling in float (what
the export stage writes) and with everything in int8, several seeds each.

    make bench-int8      # python -m benchmarks.quantization [--seeds 1 2 3]

For each seed (params.yaml's ``seed``: the split, the initialisation, the calibration draw),
the demo's pipeline (scikit-learn's digits, EfficientNet-Lite0 with ImageNet weights) runs up
to ``phase2_finetune`` in a scratch git + DVC repository; its checkpoint is then quantised both
ways with ``export.calibration_images`` training images and each file checked in LiteRT on
the whole test split against the Keras model.

Writes reports/quantization.json: per seed and way the accuracy lost against Keras (points),
the agreement with Keras and the file size; per way the mean and standard deviation.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.benchmark import ROOT, write_params
from benchmarks.tuning import _env
from src.demo import demo_overrides, write_digits
from src.finetune.files import write_json
from workbench.projects import PROJECT_FILES, copy_files

DEMO = demo_overrides(ROOT)
SETTINGS = DEMO | {"export.formats": [], "tracker": "none"}
OUT = ROOT / "reports/quantization.json"
WAYS = {"float_rescaling": True, "all_int8": False}


def scratch_repository(workdir: Path) -> None:
    copy_files(PROJECT_FILES, ROOT, workdir)
    write_digits(workdir / DEMO["data.folder"])
    write_params(workdir, SETTINGS)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
        subprocess.run(command, cwd=workdir, check=True, env=_env())


def measure_seed(workdir: Path, seed: int) -> list[dict[str, Any]]:
    """Fine-tune with ``seed``, then quantise the checkpoint each way and check it."""
    from src.finetune.data.prepared import load_split
    from src.finetune.export.checks import predict_all
    from src.finetune.export.formats import quantized_litert, without_normalization_layers
    from src.finetune.export.runtimes import LiteRtRuntime
    from src.finetune.model.checkpoints import load_checkpoint
    from src.finetune.model.network import serving_model
    from src.stages.export import calibration_images

    params = write_params(workdir, SETTINGS | {"seed": seed})
    dvc = [str(Path(sys.executable).parent / "dvc"), "repro", "phase2_finetune"]
    subprocess.run(dvc, cwd=workdir, env=_env(), check=True, stdout=subprocess.DEVNULL)
    data = workdir / "data/prepared"
    test = load_split(data, "test")
    checkpoint = load_checkpoint(workdir / "models/phase2.keras", made_by="phase2_finetune")
    model = without_normalization_layers(serving_model(checkpoint))
    images = test.images.astype(np.float32)
    reference = model.predict(images, verbose=0).argmax(1)
    keras_accuracy = float(np.mean(reference == test.labels))
    count = params["export"]["calibration_images"]
    calibration = calibration_images(SimpleNamespace(data=data), count, seed)
    rows = []
    for way, float_rescaling in WAYS.items():
        path = workdir / f"{way}.tflite"
        path.write_bytes(quantized_litert(model, calibration, float_rescaling))
        predicted = predict_all(LiteRtRuntime(path), images).argmax(1)
        accuracy = float(np.mean(predicted == test.labels))
        rows.append({
            "seed": seed,
            "way": way,
            "test_images": len(test),
            "keras_accuracy": round(keras_accuracy, 4),
            "accuracy": round(accuracy, 4),
            "points_lost": round(100 * (keras_accuracy - accuracy), 2),
            "agreement": round(float(np.mean(predicted == reference)), 4),
            "size_mb": round(path.stat().st_size / 1e6, 3),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for way in WAYS:
        mine = [row for row in rows if row["way"] == way]
        for key in ("points_lost", "agreement", "size_mb"):
            values = [row[key] for row in mine]
            out[f"{way}_{key}"] = round(statistics.mean(values), 4)
            out[f"{way}_{key}_std"] = round(statistics.stdev(values), 4) if len(mine) > 1 else 0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as scratch:
        workdir = Path(scratch)
        scratch_repository(workdir)
        rows = [row for seed in args.seeds for row in measure_seed(workdir, seed)]
    data = "scikit-learn digits at 96x96, EfficientNet-Lite0 with ImageNet weights"
    result = {"data": data, "runs": rows, "summary": summary(rows)}
    write_json(OUT, result)
    print(result["summary"])


if __name__ == "__main__":
    main()
