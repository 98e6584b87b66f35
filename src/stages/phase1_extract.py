"""Stage 2: feature extraction. Train a new head on the frozen pre-trained base."""

from __future__ import annotations

from src.finetune.data.prepared import load_info, load_split
from src.finetune.model.network import serving_model
from src.finetune.params import Phase, load_params
from src.finetune.training.devices import configure
from src.finetune.training.loop import seed_everything
from src.finetune.training.plan import Plan
from src.stages.declaration import File, Log, Stage
from src.stages.phase import new_head_on_base, phase_run, train_phase

STAGE = Stage(
    name="phase1_extract",
    doc=__doc__,
    params=("seed", "data.image_size", "model", "augment", "phase1", "train"),
    inputs={"data": File("data/prepared", "prepared splits")},
    outputs={
        "model": File("models/phase1.keras", "checkpoint to write"),
        "history": File("reports/phase1_history.csv", "history CSV to write", Log.STAGE),
        "summary": File("reports/phase1_summary.json", "phase summary to write", Log.STAGE),
    },
    backup=File("models/.phase1_backup", "per-epoch backup, kept only after a kill"),
)


def main(argv: list[str] | None = None) -> None:
    paths = STAGE.parse(argv)
    params = load_params()
    seed_everything(params.seed, params.train.deterministic)
    data = load_split(paths.data, "train"), load_split(paths.data, "val")
    devices = configure(params.train)
    plan = Plan.for_phase(params, Phase.EXTRACT, jit_compile=devices.jit_compile)

    with phase_run(STAGE, params, paths, devices) as run:
        info = load_info(paths.data)
        model = new_head_on_base(params, info)
        run.tracker.log_params(
            {"model.weights_source": params.backbone.weights_source(params.model.weights)}
        )
        train_phase(STAGE, model, data, plan, run, info.class_names)
        if devices.chief:
            run.tracker.log_model(serving_model(model), "baseline_model", info.class_names)


if __name__ == "__main__":
    STAGE.run(main)
