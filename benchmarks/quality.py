"""How good the pipeline's models are on real photos: the real DVC stages on Fashion-MNIST
(Debian's dataset-fashion-mnist) and on scikit-learn's digits, several seeds per row.

    make bench-quality      # python -m benchmarks.quality [--per-class 100 1000] [--seeds 3]

Each row is a set of params on top of params.yaml, run with `dvc repro` in a scratch DVC
repository holding the photos as a class folder with its test split given (a fixed set of
``--test-per-class`` photos of each class from the package's own test set), with
EfficientNet-Lite0 and the ImageNet weights `make install` brings:

- ``course``: the course recipe (phase 1, the frozen base, is ``baseline``; phase 2, fine-
  tuned, is ``finetuned``), and ``random``: the same with random weights;
- ``strong``: recipes/strong.yaml (its unfreezing fitted to Lite0's 151 layers), and one row
  per technique of it added to the course recipe alone;
- ``size-N``: the course recipe at N pixels;
- TTA: every row's evaluate also reports its ``_tta`` accuracies (evaluate.tta: 2).

Writes reports/quality.json (every run: params, metrics, wall time; every row: mean and
standard deviation over the seeds) and reports/figures/quality.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.benchmark import ROOT, measure, write_params
from src.finetune.files import write_json
from src.recipes import load_recipe
from tests.support import fashion_mnist
from tests.support.projects import copy_files

PROJECT = ("src", "recipes", "dvc.yaml", "params.yaml")
COURSE = {
    "data.source": "folder",
    "data.folder": "data/photos",
    "data.image_size": 64,
    "model.backbone": "efficientnetlite0",
    "model.weights": "imagenet",
    "evaluate.tta": 2,
    "tracker": "none",  # the numbers are what counts here, not their runs
}
LITE0_UNFREEZE = 100  # block5 to the top: the strong recipe's 237 is EfficientNetV2B0's
# The strong recipe's keys, by technique: each is added to the course recipe on its own.
TECHNIQUES = {
    "augment": ("augment.flip", "augment.crop_pad"),
    "adamw": ("phase1.optimizer", "phase1.weight_decay", "phase2.optimizer", "phase2.weight_decay"),
    "cosine": ("phase1.schedule", "phase1.warmup_epochs",
               "phase2.schedule", "phase2.warmup_epochs"),
    "label-smoothing": ("phase1.label_smoothing", "phase2.label_smoothing"),
    "discriminative": ("phase2.lr", "phase2.unfreeze_last", "phase2.lr_decay"),
    "gradual": ("phase2.unfreeze_last", "phase2.unfreeze_every"),
}  # fmt: skip
SIZES = (32, 96, 128)
KEYS = (
    "baseline_accuracy",
    "finetuned_accuracy",
    "baseline_accuracy_tta",
    "finetuned_accuracy_tta",
)


def strong_recipe() -> dict[str, Any]:
    recipe = load_recipe("strong", ROOT)
    return recipe | {"phase2.unfreeze_last": LITE0_UNFREEZE, "evaluate.tta": 2}


def rows(selected: list[str] | None) -> dict[str, dict[str, Any]]:
    """Every row's params on top of the course recipe."""
    strong = strong_recipe()
    table = {
        "course": {},
        "random": {"model.weights": "none"},
        "strong": strong,
        **{
            f"course+{name}": {key: strong[key] for key in keys}
            for name, keys in TECHNIQUES.items()
        },
        **{f"size-{size}": {"data.image_size": size} for size in SIZES},
    }
    return {name: table[name] for name in (selected or table)}


def scratch_repository(workdir: Path) -> None:
    copy_files(PROJECT, ROOT, workdir)
    measure(["dvc", "init", "--no-scm", "-q"], workdir)
    shutil.copytree(ROOT / ".dvc/plots", workdir / ".dvc/plots")


def write_photos(workdir: Path, dataset: str, per_class: int, test_per_class: int) -> None:
    target = workdir / "data/photos"
    shutil.rmtree(target, ignore_errors=True)
    if dataset == "fashion-mnist":
        fashion_mnist.write_folder(target, per_class, test_per_class, seed=0)
    else:
        from src.demo import write_digits

        write_digits(target)


def run_row(workdir: Path, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    params = COURSE | overrides | {"seed": seed}
    write_params(workdir, params)
    started = time.monotonic()
    measure(["dvc", "repro"], workdir)
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    return {
        "seed": seed,
        "wall_s": round(time.monotonic() - started, 1),
        **{key: metrics.get(key) for key in KEYS},
        "test_images": metrics["test_images"],
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of each accuracy over the seeds, and the wall time."""
    out: dict[str, Any] = {"seeds": len(runs)}
    for key in (*KEYS, "wall_s"):
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            out[key] = round(statistics.mean(values), 4)
            out[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    """One panel per dataset: each row's mean test accuracy after phase 1 and after phase 2,
    with one standard deviation over the seeds."""
    from matplotlib.figure import Figure

    datasets = results["datasets"]
    figure = Figure(figsize=(11, 3.2 * len(datasets)))
    axes = figure.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for axis, (name, table) in zip(axes, datasets.items(), strict=True):
        names = list(table)
        bars = ((-0.2, "baseline_accuracy", "phase 1 (frozen)"),
                (0.2, "finetuned_accuracy", "phase 2 (fine-tuned)"))  # fmt: skip
        for offset, key, label in bars:
            axis.bar(
                [i + offset for i in range(len(names))],
                [table[n].get(key, 0) for n in names],
                width=0.4,
                yerr=[table[n].get(f"{key}_std", 0) for n in names],
                label=label,
                capsize=3,
            )
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize="small")
        axis.set_ylabel("test accuracy")
        axis.set_title(f"{name}: mean of {table[names[0]]['seeds']} seeds, one std as error bar")
        axis.set_ylim(0, 1)
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def markdown(results: dict[str, Any]) -> str:
    """The tables docs/quality.md shows: mean ± std over the seeds, and the wall time."""
    lines = []
    for name, table in results["datasets"].items():
        lines += [
            f"**{name}** ({next(iter(table.values()))['seeds']} seeds a row)",
            "",
            "| row | phase 1 (frozen) | phase 2 (fine-tuned) | phase 2 with TTA | wall time |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row, result in table.items():
            cells = [
                f"{result[key]:.3f} ± {result[f'{key}_std']:.3f}" if key in result else "n/a"
                for key in ("baseline_accuracy", "finetuned_accuracy", "finetuned_accuracy_tta")
            ]
            lines.append(f"| {row} | {' | '.join(cells)} | {result['wall_s']:.0f} s |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", nargs="+", help="only these rows (default: all)")
    parser.add_argument("--digits", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/quality.json")
    parser.add_argument("--table", action="store_true", help="print --out's tables and stop")
    parser.add_argument(
        "--append", action="store_true", help="keep --out's other rows; replace the rows run now"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return
    try:
        fashion_mnist.split("t10k")
    except fashion_mnist.Missing as missing:
        raise SystemExit(f"error: bench-quality: {missing}") from None
    datasets = [("fashion-mnist", n) for n in args.per_class] + (
        [("digits", 0)] if args.digits else []
    )
    results: dict[str, Any] = {"test_per_class": args.test_per_class, "datasets": {}}
    if args.append and args.out.is_file():
        results = json.loads(args.out.read_text())
        if results["test_per_class"] != args.test_per_class:
            raise SystemExit(f"error: bench-quality: {args.out} has another --test-per-class")
    workdir = Path(tempfile.mkdtemp(prefix="finetune-quality-"))
    try:
        scratch_repository(workdir)
        for dataset, per_class in datasets:
            name = f"{dataset}-{per_class}" if per_class else dataset
            write_photos(workdir, dataset, per_class, args.test_per_class)
            table = rows(args.rows if dataset == "fashion-mnist" else ["course", "random"])
            results["datasets"].setdefault(name, {})
            for row, overrides in table.items():
                runs = []
                for seed in range(args.seeds):
                    print(f"{name} {row} seed {seed}", flush=True)
                    runs.append(run_row(workdir, overrides, seed))
                    print(f"  {runs[-1]}", flush=True)
                results["datasets"][name][row] = {
                    "params": overrides,
                    "runs": runs,
                    **summary(runs),
                }
                write_json(args.out, results)  # each finished row kept, even if a later fails
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    plot(results, args.out.parent / "figures" / "quality.png")
    print(markdown(results))


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    sys.exit(main())
