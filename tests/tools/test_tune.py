"""The tuner's command line: what it refuses before any trial, and where a trial's value
comes from."""

import json

import pytest

from src.finetune.errors import PipelineError
from src.finetune.training.history import HISTORY_COLUMNS
from src.tune import LAST_PHASE_HISTORY, LAST_PHASE_SUMMARY, main, trial_value
from tests.support.commands import stage_module
from tests.support.params import write_params

SPACE = "trials: 2\nspace:\n  phase2.lr: {low: 1.0e-5, high: 1.0e-2, log: true}\n"


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


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--study", "my study"], "--study 'my study': use letters, digits"),
        (["--study=-x"], "--study '-x': use letters"),
        (["--space", "missing.yaml"], "missing.yaml: file not found"),
    ],
)
def test_a_bad_command_line_is_one_line_before_any_trial(workdir, argv, says):
    write_params(workdir / "params.yaml")
    (workdir / "tune.yaml").write_text(SPACE)
    with pytest.raises(PipelineError) as refused:
        main(argv)
    assert says in str(refused.value)
    assert not (workdir / "optuna.db").exists() and not (workdir / "reports").exists()


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--jobs", "0"], ["--jobs", "100"]])
def test_counts_out_of_range_are_refused_by_the_parser(workdir, argv, capsys):
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2 and argv[0] in capsys.readouterr().err
