"""A study's trials: where a trial's value comes from, and what a failed one says."""

import json
import os

import pytest

from src.finetune.environment import TENSORFLOW_THREADS
from src.finetune.training.history import HISTORY_COLUMNS
from src.finetune.tuning import trials
from src.finetune.tuning.trials import (
    LAST_PHASE_HISTORY,
    LAST_PHASE_SUMMARY,
    stage_error,
    trial_value,
)
from tests.support.commands import stage_module


def test_a_trial_is_valued_by_the_file_the_fine_tuning_stage_writes():
    outputs = stage_module("phase2_finetune").STAGE.outputs
    assert LAST_PHASE_HISTORY.as_posix() == outputs["history"].path
    assert LAST_PHASE_SUMMARY.as_posix() == outputs["summary"].path


def test_a_trial_is_worth_its_metric_at_the_epoch_the_phase_kept(tmp_path):
    history = tmp_path / LAST_PHASE_HISTORY
    history.parent.mkdir(parents=True)
    rows = [[epoch, 0.5, 1.0, 0.1 * epoch, 2.0 - 0.1 * epoch] for epoch in (3, 4, 5)]
    history.write_text(
        ",".join(HISTORY_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    )
    summary = {
        "phase": "phase2", "first_epoch": 3, "last_epoch": 5, "kept_epoch": 4,
        "stopped_early": True, "lr": {"3": 0.001, "4": 0.001, "5": 0.001},
    }  # fmt: skip
    (tmp_path / LAST_PHASE_SUMMARY).write_text(json.dumps(summary))
    assert trial_value(tmp_path, "val_accuracy") == pytest.approx(0.4)
    assert trial_value(tmp_path, "val_loss") == pytest.approx(1.6)


def test_a_failed_trial_gives_the_stages_own_error_line(tmp_path):
    log = tmp_path / "trial-3.log"
    log.write_text(
        "Running stage 'phase2_finetune':\n[phase2_finetune] phase2: training the head\n"
        "error: phase2_finetune: training diverged: the loss is not finite at epoch 17; lower "
        "phase2.lr and run again\nERROR: failed to reproduce 'phase2_finetune'\n"
    )
    assert stage_error(log) == (
        "error: phase2_finetune: training diverged: the loss is not finite at epoch 17; lower "
        "phase2.lr and run again"
    )
    assert stage_error(tmp_path / "absent.log") is None


def test_each_tuning_worker_gives_its_trials_a_share_of_the_cores(monkeypatch, tmp_path):
    started = []

    class Worker:
        def __init__(self, command, env, preexec_fn):
            started.append((command, env))

        def wait(self, timeout=None):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(trials.subprocess, "Popen", Worker)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for name in TENSORFLOW_THREADS:
        monkeypatch.delenv(name, raising=False)
    trials.run_workers(tmp_path / "tune.yaml", jobs=2, trials=6, study="s", storage="sqlite://")
    assert len(started) == 2
    for command, env in started:
        assert command[-1] == "--worker"
        assert [env[name] for name in TENSORFLOW_THREADS] == ["2", "2"]
