"""What pruning saves: the same search with the median pruner and without, several seeds each.

    make bench-tune      # python -m benchmarks.tuning [--trials 20] [--seeds 1 2] [--jobs 1]

On the demo's data (scikit-learn's digits as a class folder, 96x96) and EfficientNet-Lite0
with the ImageNet weights `make install` brings, each seed runs two studies with
`python -m src.tune` in a scratch git + DVC repository: ``median`` (the pruner of tune.yaml)
and ``none``, over tune.yaml's space (``phase2.lr``, ``phase2.unfreeze_last``,
``phase2.label_smoothing``). The seed is params.yaml's ``seed``: the split, the initialisation
and the sampler. Exports are off (they are not what is tuned), so is MLflow. Each pruner has
a repository of its own: with one shared DVC cache, the unpruned study's trials that draw the
params of a pruned study's trial would come from the cache, trained in zero epochs.

Writes reports/tuning/benchmark.json: per study the best value, the epochs trained in all
trials, the trials pruned and the wall time; per pruner the mean and standard deviation over
the seeds, and the share of epochs pruning saved.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from benchmarks.benchmark import ROOT, write_params
from src.demo import demo_overrides, write_digits
from src.finetune.files import write_json
from workbench.projects import PROJECT_FILES, copy_files

PRUNERS = ("median", "none")
DEMO = demo_overrides(ROOT)
SETTINGS = DEMO | {"export.formats": [], "tracker": "none"}
OUT = ROOT / "reports/tuning/benchmark.json"


def scratch_repository(workdir: Path) -> None:
    copy_files(PROJECT_FILES, ROOT, workdir)
    write_digits(workdir / DEMO["data.folder"])
    write_params(workdir, SETTINGS)
    space = YAML(typ="safe").load((ROOT / "tune.yaml").read_text())
    for pruner in PRUNERS:
        (workdir / f"{pruner}.yaml").write_text(json.dumps(space | {"pruner": pruner}))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
        subprocess.run(command, cwd=workdir, check=True, env=_env())


def _env() -> dict[str, str]:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env |= {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | {"DVC_NO_ANALYTICS": "1"}


def run_study(workdir: Path, pruner: str, seed: int, trials: int, jobs: int) -> dict[str, Any]:
    write_params(workdir, SETTINGS | {"seed": seed})
    study = f"{pruner}-s{seed}"
    command = [sys.executable, "-m", "src.tune", "--space", f"{pruner}.yaml", "--study", study]
    command += ["--trials", str(trials), "--jobs", str(jobs)]
    started = time.monotonic()
    subprocess.run(command, cwd=workdir, env=_env(), check=True)
    results = json.loads((workdir / f"reports/tuning/{study}.json").read_text())
    return {
        "pruner": pruner,
        "seed": seed,
        "best": results["best"]["value"],
        "best_params": results["best"]["params"],
        "epochs": results["epochs"],
        "pruned": sum(t["state"] == "pruned" for t in results["trials"]),
        "trials": len(results["trials"]),
        "wall_s": round(time.monotonic() - started, 1),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": len(runs)}
    for key in ("best", "epochs", "pruned", "wall_s"):
        values = [run[key] for run in runs]
        out[key] = round(statistics.mean(values), 4)
        out[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--append", action="store_true", help="keep the studies benchmark.json already holds"
    )
    args = parser.parse_args(argv)
    runs = json.loads(OUT.read_text())["runs"] if args.append and OUT.exists() else []
    done = {(run["pruner"], run["seed"]) for run in runs}
    for pruner in PRUNERS:
        with tempfile.TemporaryDirectory(prefix="bench-tune-") as scratch:
            workdir = Path(scratch)
            scratch_repository(workdir)
            for seed in args.seeds:
                if (pruner, seed) in done:
                    continue
                runs.append(run_study(workdir, pruner, seed, args.trials, args.jobs))
                print(json.dumps(runs[-1]), flush=True)
                write_json(OUT, {"runs": runs})  # a study at a time, for --append
    rows = {pruner: summary([r for r in runs if r["pruner"] == pruner]) for pruner in PRUNERS}
    saved = 1 - rows["median"]["epochs"] / rows["none"]["epochs"]
    results = {
        "data": "scikit-learn digits, 96x96, efficientnetlite0, imagenet weights",
        "command": "python -m benchmarks.tuning " + " ".join(argv or sys.argv[1:]),
        "space": YAML(typ="safe").load((ROOT / "tune.yaml").read_text())["space"],
        "runs": runs,
        "pruners": rows,
        "epochs_saved": round(saved, 3),
        "best_difference": round(rows["median"]["best"] - rows["none"]["best"], 4),
    }
    write_json(OUT, results)
    print(json.dumps({k: results[k] for k in ("pruners", "epochs_saved", "best_difference")}))


if __name__ == "__main__":
    main()
