"""The tuner's command line: what it refuses before any trial."""

import pytest

from src.finetune.errors import PipelineError
from src.tune import main
from tests.support.params import write_params

SPACE = "trials: 2\nspace:\n  phase2.lr: {low: 1.0e-5, high: 1.0e-2, log: true}\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--study", "my study"], "--study 'my study': use letters, digits"),
        (["--study=-x"], "--study '-x': use letters"),
        (["--space", "missing.yaml"], "missing.yaml: file not found"),
        (  # no --study given: the space file's name is blamed, not --study
            ["--space", "my space.yaml"],
            "the study is named after my space.yaml ('my space'); give --study NAME, or: use",
        ),
    ],
)
def test_a_bad_command_line_is_one_line_before_any_trial(workdir, argv, says):
    write_params(workdir / "params.yaml")
    (workdir / "tune.yaml").write_text(SPACE)
    (workdir / "my space.yaml").write_text(SPACE)
    with pytest.raises(PipelineError) as refused:
        main(argv)
    assert says in str(refused.value)
    assert not (workdir / "optuna.db").exists() and not (workdir / "reports").exists()


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--jobs", "0"], ["--jobs", "100"]])
def test_counts_out_of_range_are_refused_by_the_parser(workdir, argv, capsys):
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2 and argv[0] in capsys.readouterr().err
