"""Importing the library acts on nothing: no environment variable, import hook of ours,
logger level or plotting backend changes until a stage or tool runs."""

import json
import subprocess
import sys

from tests.support.params import ROOT

PROBE = """
import importlib, json, logging, os, pkgutil, sys
before_env, before_hooks = dict(os.environ), list(sys.meta_path)
before_level = logging.getLogger("mlflow.store.db.utils").level
import src.finetune
for module in pkgutil.walk_packages(src.finetune.__path__, "src.finetune."):
    importlib.import_module(module.name)
import src.stages.report, src.stages.evaluate, src.relog, src.ui, src.predict
import matplotlib
print(json.dumps({
    "env": sorted(
        name
        for name in set(os.environ) ^ set(before_env)
        if name == "TF_CPP_MIN_LOG_LEVEL" or name.startswith("MLFLOW_")
    ),
    "hooks": [
        type(h).__name__
        for h in sys.meta_path
        if h not in before_hooks and type(h).__module__.startswith("src.")
    ],
    "level": logging.getLogger("mlflow.store.db.utils").level == before_level,
    "backend": str(dict.__getitem__(matplotlib.rcParams, "backend")),
}))
"""


def test_importing_every_module_changes_nothing():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    effects = json.loads(result.stdout.strip().splitlines()[-1])
    # matplotlib keeps a sentinel until someone chooses a backend (the old matplotlib.use)
    assert effects.pop("backend") != "agg"
    assert effects == {"env": [], "hooks": [], "level": True}


# Every stage is a process that pays for its imports on every run, in every experiment and
# tuning trial; the stages that neither train nor score import neither TensorFlow nor
# scikit-learn (about 5 s and 1.5 s on 2 cores).
LIGHT_STAGES = ("prepare", "report")
HEAVY = ("tensorflow", "keras", "sklearn")


def test_the_stages_that_neither_train_nor_score_import_no_heavy_library():
    probe = (
        "import importlib, json, sys\n"
        f"for name in {LIGHT_STAGES!r}: importlib.import_module('src.stages.' + name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
