"""Stage 5: the fine-tuned model in the formats other runtimes load, each checked in its own
runtime on the whole test split (accuracy, agreement with Keras, size, latency)."""

from __future__ import annotations

import logging
import time

import numpy as np

from src.finetune.data.prepared import load_info, load_split
from src.finetune.errors import PipelineError, first_line
from src.finetune.export.checks import check, missed_targets
from src.finetune.export.formats import Format, export_model
from src.finetune.export.results import ExportReport
from src.finetune.export.runtimes import KerasRuntime, open_model
from src.finetune.files import atomic_dir, atomic_path
from src.finetune.model.checkpoints import check_checkpoint, load_checkpoint
from src.finetune.model.network import serving_model
from src.finetune.params import load_params
from src.stages.declaration import File, Log, Stage

STAGE = Stage(
    name="export",
    doc=__doc__,
    params=("seed", "export"),
    inputs={
        "data": File("data/prepared", "prepared splits"),
        "model": File("models/phase2.keras", "fine-tuned checkpoint"),
    },
    outputs={
        "exports": File("models/export", "folder to write the exports to", Log.COMPARISON),
        "export-results": File("reports/export.json", "export JSON to write", Log.COMPARISON),
    },
)
log = logging.getLogger(STAGE.name)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    for converter in ("tf2onnx", "tensorflow"):  # their INFO lines narrate each graph pass
        logging.getLogger(converter).setLevel(logging.WARNING)
    params = load_params()
    test, info = load_split(paths.data, "test"), load_info(paths.data)
    checkpoint = load_checkpoint(paths.model, made_by="phase2_finetune")
    check_checkpoint(
        checkpoint, paths.model, params.model.backbone, info.image_shape, info.class_names
    )
    model = serving_model(checkpoint)
    images = test.images.astype(np.float32)
    calibration = calibration_images(paths, params.export.calibration_images, params.seed)

    with STAGE.tracked(params, paths) as tracker:
        keras, reference = check("keras", KerasRuntime(model), paths.model, images, test.labels)
        exports, failed = [], {}
        with atomic_dir(paths.exports) as folder:
            for name in params.export.formats:
                format = Format(name)
                log.info("exporting %s for %s", format, format.runtime)
                started = time.monotonic()
                try:
                    export_model(model, format, folder / format.file_name, info.class_names,
                                 calibration)  # fmt: skip
                    runtime = open_model(folder / format.file_name).runtime
                except Exception as error:  # a converter fails in many ways; the others go on
                    failed[name] = first_line(error, 300)
                    log.error("%s: export failed: %s", name, failed[name])
                    continue
                checked, _ = check(name, runtime, folder / format.file_name, images, test.labels,
                                   reference, time.monotonic() - started)  # fmt: skip
                # Recorded where it will live: the folder is renamed into place at the end.
                checked = checked.model_copy(update={"path": str(paths.exports / format.file_name)})
                exports.append(checked)
                log.info(
                    "%s: %.2f MB, accuracy %.4f, agrees with Keras on %.2f%%, %.2f ms per "
                    "image alone, %.2f ms in batches of 32",
                    name, checked.size_mb, checked.accuracy, 100 * checked.agreement,
                    checked.latency_ms_batch1, checked.latency_ms_batch32,
                )  # fmt: skip
        warnings = missed_targets(keras, exports)
        for warning in warnings:
            log.warning(warning)
        report = ExportReport(
            test_images=len(test), keras=keras, exports=exports, failed=failed, warnings=warnings
        )
        with atomic_path(paths.export_results) as results:
            results.write_text(report.model_dump_json(indent=2) + "\n")
        tracker.link_model_metrics({"finetuned_model": export_metrics(report)})
        STAGE.record(tracker, paths)
    if failed:
        raise PipelineError(
            f"export.formats: {', '.join(failed)} failed ({'; '.join(failed.values())}); the "
            f"others are in {paths.exports}; remove the failing format from export.formats"
        )


def calibration_images(paths, count: int, seed: int) -> np.ndarray:
    """``count`` training images drawn with ``seed``, the same for every run of these params."""
    train = load_split(paths.data, "train")
    chosen = np.random.default_rng(seed).permutation(len(train))[:count]
    return train.images[np.sort(chosen)].astype(np.float32)


def export_metrics(report: ExportReport) -> dict[str, float]:
    """MLflow metrics of the fine-tuned model: ``onnx_accuracy``, ``onnx_size_mb`` and so on."""
    keys = ("accuracy", "agreement", "size_mb", "latency_ms_batch1", "latency_ms_batch32")
    return {
        f"{checked.format}_{key}": getattr(checked, key)
        for checked in (report.keras, *report.exports)
        for key in keys
        if not (checked is report.keras and key == "agreement")
    }


if __name__ == "__main__":
    STAGE.run(main)
