"""Each export checked in its own runtime on the whole test split: accuracy, agreement with
the Keras model, file size, per-image latency; and the targets it must meet."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from src.finetune.export.formats import Format
from src.finetune.export.results import Checked
from src.finetune.export.runtimes import Runtime

BATCH = 32
LATENCY_REPEATS = {1: 30, BATCH: 5}  # timed calls per batch size, after one warm-up call
MIN_AGREEMENT = 0.995  # float exports: share of test images predicted as Keras predicts them
MAX_INT8_LOSS = 0.01  # int8: at most this much accuracy lost against the Keras model
MIN_INT8_SHRINK = 3.0  # int8: at least this many times smaller than the float LiteRT file


def predict_all(runtime: Runtime, images: np.ndarray) -> np.ndarray:
    """Class probabilities for every image, ``BATCH`` at a time."""
    rows = [
        runtime.predict(np.ascontiguousarray(images[i : i + BATCH], dtype=np.float32))
        for i in range(0, len(images), BATCH)
    ]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


def latency_ms(runtime: Runtime, images: np.ndarray, batch: int) -> float:
    """Median milliseconds per image over ``LATENCY_REPEATS[batch]`` calls at ``batch``."""
    sample = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])), np.float32)
    runtime.predict(sample)  # warm-up: allocation, graph tracing, thread pools
    timings = []
    for _ in range(LATENCY_REPEATS[batch]):
        started = time.perf_counter()
        runtime.predict(sample)
        timings.append(time.perf_counter() - started)
    return round(1000 * statistics.median(timings) / batch, 3)


def size_mb(path: Path) -> float:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return round(sum(f.stat().st_size for f in files) / 1e6, 3)


def check(
    name: str,
    runtime: Runtime,
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray | None = None,
    seconds: float = 0.0,
) -> tuple[Checked, np.ndarray]:
    """``runtime``'s model measured on the test split, and its predicted classes;
    ``reference``: the Keras model's (None: this is the Keras model)."""
    predicted = predict_all(runtime, images).argmax(axis=1)
    reference = predicted if reference is None else reference
    checked = Checked(
        format=name,
        path=str(path),
        size_mb=size_mb(path),
        accuracy=round(float(np.mean(predicted == labels)), 6),
        agreement=round(float(np.mean(predicted == reference)), 6),
        latency_ms_batch1=latency_ms(runtime, images, 1),
        latency_ms_batch32=latency_ms(runtime, images, BATCH),
        seconds=round(seconds, 1),
    )
    return checked, predicted


def missed_targets(keras: Checked, exports: list[Checked]) -> list[str]:
    """What falls short of the targets, one sentence each (nothing when all are met)."""
    misses = []
    by_format = {e.format: e for e in exports}
    for export in exports:
        if Format(export.format).quantized:
            loss = keras.accuracy - export.accuracy
            if loss > MAX_INT8_LOSS:
                misses.append(
                    f"{export.format} loses {100 * loss:.1f} points of accuracy (target: at "
                    f"most {100 * MAX_INT8_LOSS:.0f}); give export.calibration_images more "
                    "images or use litert"
                )
            if (float_file := by_format.get(Format.LITERT)) and (
                float_file.size_mb < MIN_INT8_SHRINK * export.size_mb
            ):
                misses.append(
                    f"{export.format} is only {float_file.size_mb / export.size_mb:.1f} times "
                    f"smaller than litert (target: {MIN_INT8_SHRINK:.0f})"
                )
        elif export.agreement < MIN_AGREEMENT:
            misses.append(
                f"{export.format} agrees with the Keras model on {100 * export.agreement:.1f}% "
                f"of the test images (target: {100 * MIN_AGREEMENT:.1f}%); do not deploy it"
            )
    return misses
