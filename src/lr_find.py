"""The learning-rate range test for a training phase, beside the stages (fastai's ``lr_find``).

    make lr-find                          # python -m src.lr_find: phase 2, from models/phase1.keras
    python -m src.lr_find --phase phase1  # the new head on the frozen base

A few hundred training steps on the phase's trainable part (as params.yaml sets it: unfrozen
layers, optimizer, augmentation, caches) while the rate grows from 1e-7 to 1; the loss
against the rate is drawn to ``reports/lr_find/<phase>.png``, the sweep and the suggested
rate written to ``<phase>.json`` and logged to the tracker (a run named ``lr_find``). Nothing
else is written and no weights change: try the rate with ``dvc exp run -S phase2.lr=...``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from src.finetune.data.prepared import load_info, load_split
from src.finetune.data.splits import at_most
from src.finetune.entrypoint import run_process
from src.finetune.environment import rerun
from src.finetune.errors import PipelineError
from src.finetune.files import atomic_path, write_json
from src.finetune.model.checkpoints import check_checkpoint, load_checkpoint
from src.finetune.params import Phase, load_params
from src.finetune.report.plots import rate_sweep_figure, save
from src.finetune.tracking import track_stage
from src.finetune.training.loop import seed_everything
from src.finetune.training.plan import Plan
from src.finetune.training.rate_range import sweep
from src.stages.phase import new_head_on_base

NAME = "lr_find"
DATA = Path("data/prepared")
PHASE1_MODEL = Path("models/phase1.keras")
OUT = Path("reports/lr_find")
log = logging.getLogger(NAME)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=[p.value for p in Phase], default=Phase.FINETUNE.value)
    parser.add_argument("--steps", type=int, default=200, help="training steps (10 or more)")
    parser.add_argument("--start", type=float, default=1e-7, help="the first rate")
    parser.add_argument("--end", type=float, default=1.0, help="the last rate")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the figure and JSON")
    args = parser.parse_args(argv)
    if args.steps < 10 or not 0 < args.start < args.end:
        parser.error("give --steps 10 or more and 0 < --start < --end")
    phase = Phase(args.phase)
    params = load_params()
    seed_everything(params.seed, params.train.deterministic)
    info = load_info(DATA)
    train = load_split(DATA, "train")
    plan = Plan.for_phase(params, phase)
    # As many training images as the steps see: a cache of the frozen part costs no more.
    enough = args.steps * plan.settings.batch_size
    train = train.take(at_most(train.labels, enough, np.random.default_rng(params.seed)))
    model = phase_model(params, phase, info)

    with track_stage(NAME, params, ("seed", "data.image_size", "model", phase.value)) as tracker:
        result = sweep(model, train, plan, args.start, args.end, args.steps)
        figure, summary = args.out / f"{phase}.png", args.out / f"{phase}.json"
        with atomic_path(figure) as figure_path, atomic_path(summary) as summary_path:
            save(rate_sweep_figure(result, f"{phase}.lr"), figure_path)
            write_json(
                summary_path,
                {
                    "phase": phase.value,
                    "suggested": result.suggested,
                    "steepest": result.steepest,
                    "minimum": result.minimum,
                    "stopped": result.stopped,
                    "rates": result.rates,
                    "losses": result.losses,
                    "raw_losses": result.raw_losses,
                },
            )
        rates = {"suggested": result.suggested, "steepest": result.steepest}
        tracker.log_results({f"{name}_lr": rate for name, rate in rates.items()}
                            | {"minimum_lr": result.minimum})  # fmt: skip
        tracker.log_artifacts([figure, summary])
    print(
        f"{phase}.lr: the loss falls fastest at {result.steepest:.2g} and is lowest at "
        f"{result.minimum:.2g} ({len(result.rates)} steps; {result.stopped}).\n"
        f"suggested {phase}.lr: {result.suggested:.2g}   "
        f"dvc exp run -S {phase}.lr={result.suggested:.2g}\n"
        f"figure: {figure}",
        flush=True,
    )


def phase_model(params, phase: Phase, info):
    """The model the phase starts from: a new head on the base (phase 1), or phase 1's
    checkpoint (phase 2)."""
    if phase is Phase.EXTRACT:
        return new_head_on_base(params, info)
    if not PHASE1_MODEL.is_file():
        raise PipelineError(
            f"{PHASE1_MODEL} not found: phase 2 starts from phase 1's checkpoint; run "
            f"{rerun('phase1_extract')} first"
        )
    model = load_checkpoint(PHASE1_MODEL, made_by="phase1_extract")
    check_checkpoint(model, PHASE1_MODEL, params.model.backbone, info.image_shape,
                     info.class_names)  # fmt: skip
    return model


if __name__ == "__main__":
    run_process(NAME, main)
