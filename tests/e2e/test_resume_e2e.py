"""SIGKILL a training stage under `dvc repro`, run `dvc repro` again: it resumes, nothing is lost.

Three attempts in one repository: phase 1 is killed after an epoch; the second attempt
resumes phase 1 and is killed in phase 2; the third resumes phase 2 and finishes. Every
fine-tuning technique is on: augmentation, AdamW with weight decay, cosine with warm-up,
label smoothing, early stopping, discriminative rates, gradual unfreezing and TTA.
"""

import json
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from src.finetune.training.optimization import learning_rate
from tests.support.commands import run, start_repro
from tests.support.projects import local_store, make_project, runs_by_execution
from tests.support.training import TOP

pytestmark = pytest.mark.e2e
EPOCHS = 4
STEPS_PER_EPOCH = 6  # 180 training images in batches of 32
EVERYTHING = {
    "augment.flip": True,
    "augment.crop_pad": 4,
    "evaluate.tta": 1,
    "phase2.unfreeze_last": TOP + 4,  # block3 with the top, and block2 from its 1x1 conv
    "phase2.lr_decay": 0.5,
    "phase2.unfreeze_every": 2,  # block2 joins at epoch EPOCHS + 3
} | {
    f"phase{n}.{key}": value
    for n in (1, 2)
    for key, value in {
        "epochs": EPOCHS,
        "optimizer": "adamw",
        "weight_decay": 0.05,
        "schedule": "cosine",
        "warmup_epochs": 1,
        "label_smoothing": 0.1,
        "early_stopping": EPOCHS,  # patience longer than the phase: it never stops
    }.items()
}
BACKUP = {"phase1_extract": "models/.phase1_backup", "phase2_finetune": "models/.phase2_backup"}


def repro_killing(repo: Path, stage: str) -> tuple[str, int]:
    """`dvc repro` with ``stage`` killed once it has backed up an epoch; (output, epochs done)."""
    state = repo / BACKUP[stage] / "state.json"
    dvc = start_repro(repo)
    deadline = time.monotonic() + 300
    while not state.exists():
        assert dvc.poll() is None, f"dvc ended before {stage} backed up an epoch"
        assert time.monotonic() < deadline, f"{stage} backed up no epoch in 300 s"
        time.sleep(0.02)
    # The stage's own Python process, not the `sh -c` that runs it where SHELL is dash.
    (victim,) = [
        p
        for p in psutil.Process(dvc.pid).children(recursive=True)
        if f"src.stages.{stage}" in p.cmdline()
    ]
    victim.kill()
    output, _ = dvc.communicate(timeout=120)
    assert dvc.returncode != 0, output
    return output, json.loads(state.read_text())["epoch"]


@pytest.fixture(scope="module")
def attempts(tmp_path_factory):
    repo = make_project(tmp_path_factory.mktemp("resume"), EVERYTHING)
    first, phase1_done = repro_killing(repo, "phase1_extract")
    left_after_kill = sorted(p.name for p in (repo / "models").iterdir())
    second, phase2_done = repro_killing(repo, "phase2_finetune")
    third = run(repo, "dvc", "repro")
    return {
        "repo": repo,
        "outputs": (first, second, third),
        "done": (phase1_done, phase2_done),
        "left_after_kill": left_after_kill,
    }


def test_a_killed_stage_leaves_only_its_backup_never_a_checkpoint(attempts):
    assert attempts["left_after_kill"] == [".phase1_backup"]


def test_each_attempt_resumes_after_the_last_epoch_it_backed_up(attempts):
    _, second, third = attempts["outputs"]
    phase1_done, phase2_done = attempts["done"]
    assert 1 <= phase1_done < EPOCHS and EPOCHS < phase2_done < 2 * EPOCHS
    assert f"resuming phase1_extract at epoch {phase1_done + 1}" in second
    assert f"resuming phase2_finetune at epoch {phase2_done + 1}" in third


def test_histories_have_every_epoch_once_and_backups_are_gone(attempts):
    repo = attempts["repo"]
    phase1 = pd.read_csv(repo / "reports/phase1_history.csv")
    phase2 = pd.read_csv(repo / "reports/phase2_history.csv")
    assert phase1["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert phase2["epoch"].tolist() == list(range(EPOCHS + 1, 2 * EPOCHS + 1))
    assert not any(p.name.endswith("_backup") for p in (repo / "models").iterdir())
    assert run(repo, "dvc", "status").strip().endswith("Data and pipelines are up to date.")


def test_killed_attempts_runs_are_marked_killed_and_the_resumed_ones_complete(attempts):
    client = local_store(attempts["repo"])
    first, second, third = runs_by_execution(client)
    status = {
        (index, r.info.run_name): r.info.status
        for index, execution in enumerate((first, second, third))
        for r in execution
        if r.data.tags["pipeline.role"] == "stage"
    }
    assert status[(0, "phase1_extract")] == "KILLED"
    assert status[(1, "phase1_extract")] == "FINISHED"
    assert status[(1, "phase2_finetune")] == "KILLED"
    assert status[(2, "phase2_finetune")] == "FINISHED"
    assert not [
        r for execution in (first, second, third) for r in execution if r.info.status == "RUNNING"
    ]
    resumed = next(r for r in third if r.info.run_name == "phase2_finetune")
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "val_accuracy")]
    assert sorted(steps) == list(range(EPOCHS + 1, 2 * EPOCHS + 1))


def test_the_resumed_phase_continues_its_schedule_and_unfreezing(attempts):
    """Had the schedule step been lost, the resumed epochs would warm up from 0 again."""
    summary = json.loads((attempts["repo"] / "reports/phase2_summary.json").read_text())
    schedule = learning_rate(1e-3, "cosine", STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH)
    expected = {str(EPOCHS + k): float(schedule(k * STEPS_PER_EPOCH)) for k in range(1, EPOCHS + 1)}
    assert summary["lr"] == pytest.approx(expected, rel=1e-5)
    assert [(g["name"], g["first_epoch"]) for g in summary["groups"]] == [
        ("block3", EPOCHS + 1),
        ("block2", EPOCHS + 3),
    ]
    metrics = json.loads((attempts["repo"] / "reports/metrics.json").read_text())
    assert "finetuned_accuracy_tta" in metrics
