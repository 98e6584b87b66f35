"""Stage 3: fine-tuning. Unfreeze the top of the base and continue at a low learning rate."""

from __future__ import annotations

import argparse
from pathlib import Path

from src.finetune.data import load_split
from src.finetune.devices import configure
from src.finetune.errors import run_stage
from src.finetune.history import read_history
from src.finetune.model import load_checkpoint, serving_model, unfreeze_top
from src.finetune.params import load_params
from src.finetune.resume import EpochBackup, fingerprint
from src.finetune.tracking import track_stage
from src.finetune.training import seed_everything, train_phase

STAGE = "phase2_finetune"
PARAMS = ("seed", "phase2", "train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared splits")
    parser.add_argument("--base-model", type=Path, required=True, help="phase 1 checkpoint")
    parser.add_argument("--base-history", type=Path, required=True, help="phase 1 history CSV")
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--history", type=Path, required=True, help="history CSV to write")
    parser.add_argument(
        "--backup-dir", type=Path, required=True, help="per-epoch backup, kept only after a kill"
    )
    args = parser.parse_args(argv)
    params = load_params()
    seed_everything(params.seed)
    train_split, val_split = load_split(args.data, "train"), load_split(args.data, "val")
    # The epoch count continues where phase 1 stopped, whatever phase1.epochs says now.
    initial_epoch = int(read_history(args.base_history)["epoch"].iloc[-1])
    devices = configure(params.train)
    with devices.strategy.scope():
        model = load_checkpoint(args.base_model, rerun="phase1_extract")

    with track_stage(STAGE, params, PARAMS) as tracker, devices.strategy.scope():
        tracker.link_inputs(args.data, args.base_model, args.base_history)
        unfreeze_top(model, params.phase2.unfreeze_last)
        train_phase(
            model,
            (train_split, val_split),
            name="phase2",
            phase=params.phase2,
            cache=True,
            cache_budget_gb=params.train.cache_budget_gb,
            jit_compile=devices.jit_compile,
            initial_epoch=initial_epoch,
            seed=params.seed,
            tracker=tracker,
            model_path=args.model,
            history_path=args.history,
            backup=EpochBackup(
                args.backup_dir,
                fingerprint(params.select(PARAMS), (args.data, args.base_model, args.base_history)),
                STAGE,
            ),
        )
        if params.mlflow.log_models:
            tracker.log_model(
                serving_model(model), "finetuned_model", register_as=params.mlflow.registered_model
            )


if __name__ == "__main__":
    run_stage(STAGE, main)
