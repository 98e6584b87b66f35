"""Stage 2: feature extraction. Train a new head on the frozen pre-trained base."""

from __future__ import annotations

import argparse
from pathlib import Path

from src.finetune.data import load_info, load_split
from src.finetune.devices import configure
from src.finetune.errors import run_stage
from src.finetune.model import build_model, serving_model
from src.finetune.params import load_params
from src.finetune.resume import EpochBackup, fingerprint
from src.finetune.training import Plan, seed_everything
from src.stages.common import PhaseOutputs, phase_run, train_phase

STAGE = "phase1_extract"
PARAMS = ("seed", "data.image_size", "model", "augment", "phase1", "train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="prepared splits")
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
    devices = configure(params.train)
    plan = Plan.for_phase(params, "phase1", jit_compile=devices.jit_compile)
    backup = EpochBackup(args.backup_dir, fingerprint(params.select(PARAMS), (args.data,)), STAGE)

    declared = PhaseOutputs(args.model, args.history, args.summary)
    with phase_run(STAGE, params, PARAMS, devices, declared, backup) as (tracker, outputs, backup):
        tracker.link_inputs(args.data)
        info = load_info(args.data)
        model = build_model(
            params.backbone,
            params.model.keras_weights,
            params.model.dropout,
            params.data.image_size,
            info.image_shape,
            info.classes,
        )
        train_phase(
            model,
            data,
            plan,
            tracker=tracker,
            backup=backup,
            outputs=outputs,
        )
        if params.mlflow.log_models and devices.chief:
            tracker.log_model(serving_model(model), "baseline_model", info.class_names)


if __name__ == "__main__":
    run_stage(STAGE, main, resumable=True)
