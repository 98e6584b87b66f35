"""Time both training phases of the pipeline against the tutorial recipe, on the same data
and machine, in one run: first with the course recipe (params.yaml), then with the strong
recipe (recipes/strong.yaml) against the tutorial code with the same augmentation.

    make bench        # python -m benchmarks.benchmark [--train 10000 --test 2000]

A generated archive in the CIFAR-10 layout (random weights, so no download) is prepared by
the pipeline's own `prepare` stage in a scratch DVC repository. Then, as whole processes:
`dvc repro phase1_extract` and `dvc repro phase2_finetune` with the params of the row (15 +
10 epochs, batch 64, caches on), and `benchmarks/recipe.py` for each phase (numpy arrays,
batch 32, the frozen base on every image every epoch, augmentation layers inside the model
as the keras.io guides put them). Phase 2 uses lr 1e-3 on both sides of the course rows, as
the offline demo does, because random weights need it. Writes reports/benchmark.json and
prints the README table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from ruamel.yaml import YAML

from src.finetune.environment import die_with_parent
from src.finetune.files import write_json
from src.finetune.params import apply_overrides, check_params
from src.recipes import load_recipe
from workbench.archives import write_archive
from workbench.projects import copy_files

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("src", "benchmarks", "recipes", "dvc.yaml", "params.yaml")
PHASE2_LR = 1e-3


STAGE_STARTS = "Running stage "  # how `dvc repro` announces each stage


def measure(
    command: list[str], cwd: Path, keep_output: bool = False, progress: bool = False
) -> dict:
    """Wall time and peak resident memory of the biggest process the command starts (and
    with ``keep_output``, what it printed, as ``output``). The output goes to a file as it
    comes: a pipe read only at the end would stop an hour's run once it filled. With
    ``progress``, each stage DVC starts is printed as it starts, with the time so far: a
    run can take an hour."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env |= {"DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryFile("w+") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # a killed benchmark leaves no `dvc repro` training on
        )  # fmt: skip
        peak = 0
        root = psutil.Process(process.pid)
        announced = StageAnnouncements(log.fileno(), started) if progress else None
        while not (ended := os.wait4(process.pid, os.WNOHANG))[0]:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, *(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                pass
            if announced:
                announced.print_new()
            time.sleep(0.1)
        wall = time.monotonic() - started
        # The kernel's own peak of the command and the processes it waited for: a command
        # that ends before the first sample still has one (ru_maxrss is in KiB on Linux).
        _, status, usage = ended
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        peak = max(peak, usage.ru_maxrss * 1024)
        log.seek(0)
        output = log.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    kept = {"output": output} if keep_output else {}
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 2**20), **kept}


class StageAnnouncements:
    """The stage starts a command's output file holds, printed once each as they appear."""

    def __init__(self, fileno: int, started: float) -> None:
        self.fileno, self.started = fileno, started
        self.offset, self.pending = 0, b""

    def print_new(self) -> None:
        chunk = os.pread(self.fileno, 1 << 20, self.offset)
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").strip()
            if text.startswith(STAGE_STARTS):
                stage = text.removeprefix(STAGE_STARTS).rstrip(":").strip("'")
                print(f"  {time.monotonic() - self.started:6.0f} s  {stage}", flush=True)


def write_params(workdir: Path, overrides: dict[str, Any]) -> dict:
    """The scratch repository's params.yaml: the project's, with ``overrides`` applied."""
    yaml = YAML()
    params = apply_overrides(yaml.load((ROOT / "params.yaml").read_text()), overrides)
    with (workdir / "params.yaml").open("w") as handle:
        yaml.dump(params, handle)
    return params


def scratch_repository(workdir: Path, n_train: int, n_test: int) -> dict[str, Any]:
    """A DVC repository of the project with a generated archive, prepared; returns the
    overrides every row shares."""
    copy_files(PROJECT, ROOT, workdir)
    sha256 = write_archive(workdir / "data/raw/bench.tar.gz", n_train, n_test, seed=7)
    shared = {
        "data.archive": "data/raw/bench.tar.gz",
        "data.sha256": sha256,
        "model.weights": "none",
    }
    write_params(workdir, shared)
    measure(["dvc", "init", "--no-scm", "-q"], workdir)
    shutil.copytree(ROOT / ".dvc/plots", workdir / ".dvc/plots")
    measure(["dvc", "repro", "prepare"], workdir)
    return shared


def last_val_accuracy(history: Path) -> float:
    if history.suffix == ".csv":
        return round(float(pd.read_csv(history)["val_accuracy"].iloc[-1]), 4)
    return round(float(json.loads(history.read_text())["val_accuracy"][-1]), 4)


def rows(shared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each row: the pipeline's params, and the tutorial code with the same augmentation
    (flips and padded crops, inside its model) and phase-2 learning rate."""
    strong = load_recipe("strong", ROOT)
    pad = strong["augment.crop_pad"]
    return {
        "course": {
            "params": shared | {"phase2.lr": PHASE2_LR},
            "recipe": {"phase2_lr": PHASE2_LR, "augment_pad": None},
        },
        "strong": {
            "params": shared | strong,
            "recipe": {"phase2_lr": strong["phase2.lr"], "augment_pad": pad},
        },
    }


def time_row(workdir: Path, row: dict[str, Any], train_images: int) -> dict:
    params = write_params(workdir, row["params"])
    epochs = {"phase1": params["phase1"]["epochs"], "phase2": params["phase2"]["epochs"]}
    recipe = [sys.executable, "-m", "benchmarks.recipe", "--data", "data/prepared"]
    recipe += ["--model", "recipe.keras"]
    if row["recipe"]["augment_pad"] is not None:
        recipe += ["--augment-pad", str(row["recipe"]["augment_pad"])]
    commands = {
        ("phase1", "pipeline"): ["dvc", "repro", "phase1_extract"],
        ("phase2", "pipeline"): ["dvc", "repro", "phase2_finetune"],
        ("phase1", "recipe"): [*recipe, "--phase", "1", "--epochs", str(epochs["phase1"]),
                               "--lr", str(params["phase1"]["lr"]), "--history", "r1.json"],
        ("phase2", "recipe"): [*recipe, "--phase", "2", "--epochs", str(epochs["phase2"]),
                               "--initial-epoch", str(epochs["phase1"]),
                               "--lr", str(row["recipe"]["phase2_lr"]),
                               "--unfreeze-last", str(check_params(params, workdir /
                                                   "params.yaml").unfrozen_layers()),
                               "--history", "r2.json"],
    }  # fmt: skip
    histories = {
        ("phase1", "pipeline"): "reports/phase1_history.csv",
        ("phase2", "pipeline"): "reports/phase2_history.csv",
        ("phase1", "recipe"): "r1.json",
        ("phase2", "recipe"): "r2.json",
    }
    results: dict = {}
    for (phase, side), command in commands.items():
        print(f"timing {side} {phase}: {' '.join(command)}", flush=True)
        numbers = measure(command, workdir)
        numbers["images_per_s"] = round(train_images * epochs[phase] / numbers["wall_s"], 1)
        numbers["val_accuracy"] = last_val_accuracy(workdir / histories[(phase, side)])
        results.setdefault(phase, {})[side] = numbers
        print(f"  {numbers}", flush=True)
    for phase in results.values():
        phase["speedup"] = round(phase["recipe"]["wall_s"] / phase["pipeline"]["wall_s"], 1)
    return results


def run(n_train: int, n_test: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    shared = scratch_repository(workdir, n_train, n_test)
    params = YAML(typ="safe").load((workdir / "params.yaml").read_text())
    train_images = int(n_train * (1 - params["data"]["val_split"]))
    timed = {name: time_row(workdir, row, train_images) for name, row in rows(shared).items()}
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "machine": {
            "cpu_cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1e9),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "data": {
            "train_images": train_images,
            "val_images": n_train - train_images,
            "image_size": params["data"]["image_size"],
            "epochs": {"phase1": params["phase1"]["epochs"], "phase2": params["phase2"]["epochs"]},
        },
        "rows": timed,
    }


def table(report: dict) -> str:
    lines = [
        "| recipe | phase | | wall time (s) | images/s | peak memory (MB) | val accuracy "
        "| speed-up |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, phases in report["rows"].items():
        for phase, sides in phases.items():
            for side in ("recipe", "pipeline"):
                n = sides[side]
                speedup = f"**{sides['speedup']}x**" if side == "pipeline" else ""
                lines.append(
                    f"| {name} | {phase} | {side} | {n['wall_s']} | {n['images_per_s']} | "
                    f"{n['peak_rss_mb']} | {n['val_accuracy']} | {speedup} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=10_000, help="generated training images")
    parser.add_argument("--test", type=int, default=2_000, help="generated test images")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmark.json")
    args = parser.parse_args()
    report = run(args.train, args.test)
    write_json(args.out, report)
    print(table(report))


if __name__ == "__main__":
    main()
