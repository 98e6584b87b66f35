"""Stage 4: test-set accuracy of both checkpoints, their difference and a confusion matrix."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from src.finetune.data import load_info, load_split
from src.finetune.errors import run_stage
from src.finetune.evaluation import score
from src.finetune.files import atomic_path, write_csv, write_json
from src.finetune.metrics import (
    comparison_metrics,
    confusion_rows,
    headline,
    per_class_metrics,
)
from src.finetune.model import check_checkpoint, load_checkpoint
from src.finetune.params import load_params
from src.finetune.tracking import track_stage

STAGE = "evaluate"
PARAMS = ("evaluate",)
log = logging.getLogger(STAGE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared splits")
    parser.add_argument("--baseline", type=Path, required=True, help="phase 1 checkpoint")
    parser.add_argument("--finetuned", type=Path, required=True, help="phase 2 checkpoint")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--per-class", type=Path, required=True, help="per-class JSON to write")
    parser.add_argument("--confusion", type=Path, required=True, help="confusion CSV to write")
    args = parser.parse_args(argv)
    params = load_params()
    test, info = load_split(args.data, "test"), load_info(args.data)
    class_names = info.class_names
    baseline_model = load_checkpoint(args.baseline, rerun="phase1_extract")
    finetuned_model = load_checkpoint(args.finetuned, rerun="phase2_finetune")
    check_checkpoint(baseline_model, args.baseline, params.model.backbone, info)
    check_checkpoint(finetuned_model, args.finetuned, params.model.backbone, info)
    tta = params.evaluate.tta

    with track_stage(STAGE, params, PARAMS) as tracker:
        tracker.link_inputs(args.data, args.baseline, args.finetuned)
        baseline, finetuned = score(baseline_model, test), score(finetuned_model, test)
        with_tta = (
            (score(baseline_model, test, tta), score(finetuned_model, test, tta)) if tta else None
        )
        metrics = comparison_metrics(baseline, finetuned, test.labels, class_names, with_tta)
        per_class = per_class_metrics(baseline, finetuned, test.labels, class_names)
        confusion = confusion_rows(test.labels, finetuned.predictions, class_names)
        # The three outputs appear together or none does.
        with (
            atomic_path(args.metrics) as metrics_path,
            atomic_path(args.per_class) as per_class_path,
            atomic_path(args.confusion) as confusion_path,
        ):
            write_json(metrics_path, metrics)
            write_json(per_class_path, per_class)
            write_csv(confusion_path, confusion)
        log.info(
            "test accuracy: baseline %.4f, fine-tuned %.4f, delta %+.4f%s",
            metrics["baseline_accuracy"],
            metrics["finetuned_accuracy"],
            metrics["accuracy_delta"],
            f"; with {tta} TTA view(s): baseline {metrics['baseline_accuracy_tta']:.4f}, "
            f"fine-tuned {metrics['finetuned_accuracy_tta']:.4f}"
            if tta
            else "",
        )
        # Linked to the logged models first, so the comparison run gets each number once.
        tracker.link_metrics_to_models(
            {
                f"{checkpoint}_model": {
                    key: value
                    for key, value in headline(metrics).items()
                    if key.startswith(checkpoint)
                }
                for checkpoint in ("baseline", "finetuned")
            }
        )
        tracker.log_results(headline(metrics))
        tracker.record_outputs(args.metrics, args.per_class, args.confusion)
        tracker.log_artifacts(args.metrics, args.per_class, args.confusion)


if __name__ == "__main__":
    run_stage(STAGE, main)
