"""`python -m src.relog` logs the params that made the outputs, as dvc.lock records them, not
whatever params.yaml says since; outputs whose params are unknown are refused in one line."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from ruamel.yaml import YAML

from src.finetune.errors import PipelineError
from src.finetune.params import Phase
from src.finetune.training.history import HISTORY_COLUMNS, Summary, write_summary
from src.relog import main, report_paths
from tests.support.commands import PIPELINE, command_env, run
from tests.support.params import ROOT, write_params
from tests.support.projects import local_store, runs_by_execution

TRAINING = ("phase1_extract", "phase2_finetune")
# What made the outputs (A), and what params.yaml says once edited (B).
MADE_WITH = {"phase1.epochs": 2, "phase2.epochs": 2, "phase2.lr": 1e-3, "model.weights": "none"}
EDITED_TO = {"phase1.epochs": 5, "phase2.epochs": 3, "phase2.lr": 5e-5, "model.weights": "imagenet"}


def write_phase(phase: Phase, first: int, last: int) -> None:
    """A training stage's history and summary, as the report stage reads them."""
    paths = report_paths()
    rows = [[epoch, 0.5, 1.0, 0.4, 1.1] for epoch in range(first, last + 1)]
    history = paths[f"{phase}-history"]
    history.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=HISTORY_COLUMNS).to_csv(history, index=False)
    summary = Summary(
        phase=phase,
        first_epoch=first,
        last_epoch=last,
        kept_epoch=last,
        stopped_early=False,
        lr=dict.fromkeys(range(first, last + 1), 1e-3),
    )
    write_summary(paths[f"{phase}-summary"], summary)


@pytest.fixture
def locked(workdir):
    """A DVC repository whose training outputs dvc.lock records as made with params A (the
    project's training stages, their params and these outputs), then params.yaml edited to B."""
    write_params(workdir / "params.yaml", MADE_WITH)
    write_phase(Phase.EXTRACT, 1, 2)
    write_phase(Phase.FINETUNE, 3, 4)
    paths = report_paths()
    stages = {
        name: {
            "cmd": PIPELINE["stages"][name]["cmd"],
            "params": PIPELINE["stages"][name]["params"],
            "outs": [str(paths[f"{phase}-{kind}"]) for kind in ("history", "summary")],
        }
        for name, phase in zip(TRAINING, Phase, strict=True)
    }
    YAML().dump({"stages": stages}, workdir / "dvc.yaml")
    run(workdir, "dvc", "init", "-q", "--no-scm")
    run(workdir, "dvc", "commit", "-q", "--force")  # dvc.lock, as `dvc repro` writes it
    write_params(workdir / "params.yaml", EDITED_TO)
    return workdir


def test_relog_logs_the_params_dvc_lock_recorded_not_those_of_params_yaml_now(locked):
    main([])
    (relogged,) = [run for execution in runs_by_execution(local_store(locked)) for run in execution]
    params = relogged.data.params
    assert relogged.info.run_name.startswith("relog-")
    assert float(params["phase2.lr"]) == MADE_WITH["phase2.lr"]
    assert params["phase1.epochs"] == "2" and params["phase2.epochs"] == "2"
    assert params["model.weights"] == "none"
    # Only what the training stages read: no stage that ran read evaluate or export.
    assert "evaluate.tta" not in params and "export.formats" not in params


def test_relog_refuses_without_dvc_lock_and_logs_nothing(locked):
    (locked / "dvc.lock").unlink()
    with pytest.raises(PipelineError, match=r"dvc\.lock not found.*run `dvc repro` first"):
        main([])
    assert not (locked / "mlflow.db").exists()


def test_relog_refuses_outputs_changed_since_dvc_lock(locked):
    write_phase(Phase.FINETUNE, 3, 5)  # a phase 2 run DVC did not record
    with pytest.raises(PipelineError, match=r"phase2_history\.csv changed since dvc\.lock"):
        main([])
    assert not (locked / "mlflow.db").exists()


def test_relog_refuses_an_output_no_stage_of_dvc_lock_wrote(locked):
    lock = YAML(typ="safe").load((locked / "dvc.lock").read_text())
    del lock["stages"]["phase2_finetune"]
    YAML().dump(lock, locked / "dvc.lock")
    with pytest.raises(PipelineError, match=r"phase2_history\.csv: no stage of dvc\.lock wrote it"):
        main([])
    assert not (locked / "mlflow.db").exists()


def test_relog_refuses_outputs_made_with_different_params_by_different_stages(locked):
    lock = YAML(typ="safe").load((locked / "dvc.lock").read_text())
    recorded = lock["stages"]["phase2_finetune"]["params"]["params.yaml"]
    recorded["seed"] += 1  # phase 2 ran alone (`dvc repro -s`) after seed changed
    YAML().dump(lock, locked / "dvc.lock")
    with pytest.raises(
        PipelineError, match=r"seed is \d+ for phase1_extract but \d+ for phase2_finetune"
    ):
        main([])
    assert not (locked / "mlflow.db").exists()


@pytest.mark.parametrize("folder", ["reports", "empty"])
def test_relog_from_a_sub_folder_refuses_and_leaves_nothing_there(locked, monkeypatch, folder):
    (locked / folder).mkdir(exist_ok=True)
    before = sorted(locked.rglob("*"))
    monkeypatch.chdir(locked / folder)
    with pytest.raises(PipelineError, match="not found"):
        main([])
    assert sorted(locked.rglob("*")) == before


def test_a_refusal_is_one_line_and_exit_code_1(locked):
    write_phase(Phase.EXTRACT, 1, 3)
    result = subprocess.run(
        [sys.executable, "-m", "src.relog"],
        cwd=locked,
        env=command_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: relog: reports/phase1_history.csv changed since dvc.lock recorded "
        "phase1_extract's run; run `dvc repro` first"
    ]
