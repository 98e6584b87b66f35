"""Stage 6: learning curves over all epochs with the fine-tuning start marked, report.md and
the model card."""

from __future__ import annotations

from src.finetune.data.checks import DataChecks
from src.finetune.data.prepared import load_info, load_split
from src.finetune.environment import experiment_name, git_commit, rerun
from src.finetune.evaluation.metrics import read_metrics, read_per_class
from src.finetune.export.results import ExportReport
from src.finetune.files import atomic_path, read_json
from src.finetune.params import Phase, load_params
from src.finetune.report.card import Provenance, render_model_card
from src.finetune.report.document import render_report, title
from src.finetune.report.plots import plot_learning_curves
from src.finetune.training.history import (
    combined_history,
    kept_epochs,
    read_history,
    read_summary,
    with_learning_rates,
)
from src.stages.declaration import File, Log, Stage

STAGE = Stage(
    name="report",
    doc=__doc__,
    params=("data.source", "data.folder", "model", "augment", "phase1", "phase2", "evaluate"),
    inputs={
        "phase1-history": File("reports/phase1_history.csv", "phase 1 history", Log.COMPARISON),
        "phase2-history": File("reports/phase2_history.csv", "phase 2 history", Log.COMPARISON),
        "phase1-summary": File("reports/phase1_summary.json", "phase 1 summary", Log.COMPARISON),
        "phase2-summary": File("reports/phase2_summary.json", "phase 2 summary", Log.COMPARISON),
        "metrics": File("reports/metrics.json", "evaluate's metrics JSON", Log.COMPARISON),
        "per-class": File("reports/per_class.json", "evaluate's per-class JSON", Log.COMPARISON),
        "export-results": File("reports/export.json", "export's JSON"),
        "data-checks": File("reports/data_checks.json", "prepare's data checks"),
        "pictures": File("reports/evaluation", "evaluate's figures (linked from the report)"),
        "data": File("data/prepared", "prepared splits (for their sizes)"),
    },
    outputs={
        "figure": File("reports/figures/validation_curves.png", "PNG to write", Log.COMPARISON),
        "report": File("reports/report.md", "Markdown report to write", Log.COMPARISON),
        "card": File("reports/model_card.md", "model card to write", Log.COMPARISON),
    },
)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    params = load_params()
    # Every input is read and checked before anything is written.
    history = combined_history(
        read_history(paths.phase1_history), read_history(paths.phase2_history)
    )
    summaries = {
        Phase.EXTRACT: read_summary(paths.phase1_summary),
        Phase.FINETUNE: read_summary(paths.phase2_summary),
    }
    metrics = read_metrics(paths.metrics)
    per_class = read_per_class(paths.per_class)
    exports = read_json(paths.export_results, ExportReport, f"run {rerun('export')}")
    checks = read_json(paths.data_checks, DataChecks, f"run {rerun('prepare', force=True)}")
    provenance = Provenance(
        image_shape=load_info(paths.data).image_shape,
        train_images=len(load_split(paths.data, "train")),
        val_images=len(load_split(paths.data, "val")),
        commit=git_commit(),
        experiment=experiment_name(),
    )
    history = with_learning_rates(history, summaries)
    kept = kept_epochs(summaries)

    with STAGE.tracked(params, paths) as tracker:
        text = render_report(
            metrics,
            per_class,
            history,
            summaries,
            params,
            exports,
            checks,
            title=title(params),
            figure=paths.figure,
            report=paths.report,
            pictures=paths.pictures,
        )
        card = render_model_card(params, metrics, per_class, summaries, exports, provenance)
        # The figure, the report and the card appear together or not at all.
        with (
            atomic_path(paths.figure) as figure,
            atomic_path(paths.report) as report,
            atomic_path(paths.card) as card_path,
        ):
            plot_learning_curves(history, kept, title(params), figure)
            report.write_text(text)
            card_path.write_text(card)
        # The comparison run gets the whole curve and the headline numbers even when DVC
        # reused phase 1 (or more) from its cache in this execution.
        tracker.log_execution(history, kept, metrics)
        STAGE.record(tracker, paths)
        tracker.attach_to_model("finetuned_model", [paths.card, paths.export_results])


if __name__ == "__main__":
    STAGE.run(main)
