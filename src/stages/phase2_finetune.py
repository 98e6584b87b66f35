"""Stage 3: fine-tuning. Unfreeze the top of the base and continue at a low learning rate."""

from __future__ import annotations

import argparse
from pathlib import Path

from src.finetune.data import load_info, load_split
from src.finetune.devices import configure
from src.finetune.errors import run_stage
from src.finetune.history import read_history
from src.finetune.model import check_checkpoint, load_checkpoint, serving_model
from src.finetune.params import load_params
from src.finetune.resume import EpochBackup, fingerprint
from src.finetune.training import Plan, seed_everything
from src.stages.common import PhaseOutputs, phase_run, train_phase

STAGE = "phase2_finetune"
PARAMS = ("seed", "augment", "phase2", "train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared splits")
    parser.add_argument("--phase1-model", type=Path, required=True, help="phase 1 checkpoint")
    parser.add_argument("--phase1-history", type=Path, required=True, help="phase 1 history")
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--history", type=Path, required=True, help="history CSV to write")
    parser.add_argument("--summary", type=Path, required=True, help="phase summary to write")
    parser.add_argument(
        "--backup-dir", type=Path, required=True, help="per-epoch backup, kept only after a kill"
    )
    args = parser.parse_args(argv)
    params = load_params()
    seed_everything(params.seed, params.train.deterministic)
    data = load_split(args.data, "train"), load_split(args.data, "val")
    # The epoch count continues where phase 1 stopped, whatever phase1.epochs says now.
    initial_epoch = int(read_history(args.phase1_history)["epoch"].iloc[-1])
    devices = configure(params.train)
    plan = Plan.for_phase(
        params, "phase2", initial_epoch=initial_epoch, jit_compile=devices.jit_compile
    )
    with devices.strategy.scope():
        model = load_checkpoint(args.phase1_model, rerun="phase1_extract")
    info = load_info(args.data)
    check_checkpoint(model, args.phase1_model, params.model.backbone, info)
    inputs = (args.data, args.phase1_model, args.phase1_history)
    backup = EpochBackup(args.backup_dir, fingerprint(params.select(PARAMS), inputs), STAGE)

    declared = PhaseOutputs(args.model, args.history, args.summary)
    with phase_run(STAGE, params, PARAMS, devices, declared, backup) as (tracker, outputs, backup):
        tracker.link_inputs(*inputs)
        train_phase(
            model,
            data,
            plan,
            tracker=tracker,
            backup=backup,
            outputs=outputs,
        )
        if params.mlflow.log_models and devices.chief:
            tracker.log_model(
                serving_model(model),
                "finetuned_model",
                info.class_names,
                register_as=params.mlflow.registered_model,
            )


if __name__ == "__main__":
    run_stage(STAGE, main, resumable=True)
