"""Stage 3: fine-tuning. Unfreeze the top of the base and continue at a low learning rate."""

from __future__ import annotations

from src.finetune.data.prepared import load_info, load_split
from src.finetune.model.checkpoints import check_checkpoint, load_checkpoint
from src.finetune.model.network import serving_model
from src.finetune.params import Phase, load_params
from src.finetune.training.devices import configure
from src.finetune.training.history import read_history
from src.finetune.training.loop import seed_everything
from src.finetune.training.plan import Plan
from src.stages.declaration import File, Log, Stage
from src.stages.phase import phase_run, train_phase

STAGE = Stage(
    name="phase2_finetune",
    doc=__doc__,
    params=("seed", "augment", "phase2", "train"),
    inputs={
        "data": File("data/prepared", "prepared splits"),
        "phase1-model": File("models/phase1.keras", "phase 1 checkpoint"),
        "phase1-history": File("reports/phase1_history.csv", "phase 1 history"),
    },
    outputs={
        "model": File("models/phase2.keras", "checkpoint to write"),
        "history": File("reports/phase2_history.csv", "history CSV to write", Log.STAGE),
        "summary": File("reports/phase2_summary.json", "phase summary to write", Log.STAGE),
    },
    backup=File("models/.phase2_backup", "per-epoch backup, kept only after a kill"),
)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    params = load_params()
    seed_everything(params.seed, params.train.deterministic)
    data = load_split(paths.data, "train"), load_split(paths.data, "val")
    # The epoch count continues where phase 1 stopped, whatever phase1.epochs says now.
    initial_epoch = int(read_history(paths.phase1_history)["epoch"].iloc[-1])
    devices = configure(params.train)
    plan = Plan.for_phase(
        params, Phase.FINETUNE, initial_epoch=initial_epoch, jit_compile=devices.jit_compile
    )
    with devices.strategy.scope():
        model = load_checkpoint(paths.phase1_model, made_by="phase1_extract")
    info = load_info(paths.data)
    check_checkpoint(
        model, paths.phase1_model, params.model.backbone, info.image_shape, info.class_names
    )

    with phase_run(STAGE, params, paths, devices) as run:
        train_phase(STAGE, model, data, plan, run, info.class_names)
        if devices.chief:
            run.tracker.log_model(
                serving_model(model),
                "finetuned_model",
                info.class_names,
                final=True,
            )


if __name__ == "__main__":
    STAGE.run(main)
