"""Stage 4: test-set accuracy of both checkpoints, their difference and a confusion matrix."""

from __future__ import annotations

import logging

from src.finetune.data.prepared import load_info, load_split
from src.finetune.evaluation.metrics import (
    CHECKPOINTS,
    Metrics,
    PerClass,
    confusion_rows,
    write_metrics,
    write_per_class,
)
from src.finetune.evaluation.scoring import score
from src.finetune.files import atomic_path, write_csv
from src.finetune.model.checkpoints import check_checkpoint, load_checkpoint
from src.finetune.params import load_params
from src.stages.declaration import File, Log, Stage

STAGE = Stage(
    name="evaluate",
    doc=__doc__,
    params=("evaluate",),
    inputs={
        "data": File("data/prepared", "prepared splits"),
        "baseline": File("models/phase1.keras", "phase 1 checkpoint"),
        "finetuned": File("models/phase2.keras", "phase 2 checkpoint"),
    },
    outputs={
        "metrics": File("reports/metrics.json", "metrics JSON to write", Log.STAGE),
        "per-class": File("reports/per_class.json", "per-class JSON to write", Log.STAGE),
        "confusion": File("reports/confusion.csv", "confusion CSV to write", Log.STAGE),
    },
)
log = logging.getLogger(STAGE.name)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    params = load_params()
    test, info = load_split(paths.data, "test"), load_info(paths.data)
    baseline_model = load_checkpoint(paths.baseline, made_by="phase1_extract")
    finetuned_model = load_checkpoint(paths.finetuned, made_by="phase2_finetune")
    for model, path in ((baseline_model, paths.baseline), (finetuned_model, paths.finetuned)):
        check_checkpoint(model, path, params.model.backbone, info)
    tta = params.evaluate.tta

    with STAGE.tracked(params, paths) as tracker:
        baseline, finetuned = score(baseline_model, test), score(finetuned_model, test)
        with_tta = (
            (score(baseline_model, test, tta), score(finetuned_model, test, tta)) if tta else None
        )
        metrics = Metrics.compare(baseline, finetuned, len(test), with_tta)
        per_class = PerClass.compare(baseline, finetuned, test.labels, info.class_names)
        confusion = confusion_rows(test.labels, finetuned.predictions, info.class_names)
        # The three outputs appear together or none does.
        with (
            atomic_path(paths.metrics) as metrics_path,
            atomic_path(paths.per_class) as per_class_path,
            atomic_path(paths.confusion) as confusion_path,
        ):
            write_metrics(metrics_path, metrics)
            write_per_class(per_class_path, per_class)
            write_csv(confusion_path, confusion)
        log.info(
            "test accuracy: baseline %.4f, fine-tuned %.4f, delta %+.4f%s",
            metrics.baseline_accuracy,
            metrics.finetuned_accuracy,
            metrics.accuracy_delta,
            f"; with {tta} TTA view(s): baseline {metrics.baseline_accuracy_tta:.4f}, "
            f"fine-tuned {metrics.finetuned_accuracy_tta:.4f}"
            if metrics.tta
            else "",
        )
        # Linked to the logged models first, so the comparison run gets each number once.
        tracker.link_model_metrics(
            {f"{checkpoint}_model": metrics.of(checkpoint) for checkpoint in CHECKPOINTS}
        )
        tracker.log_results(metrics.headline())
        STAGE.record(tracker, paths)


if __name__ == "__main__":
    STAGE.run(main)
