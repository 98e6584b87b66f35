"""The search space: every key and value checked against the params schema before a trial."""

from pathlib import Path

import optuna
import pytest

from src.finetune.errors import PipelineError
from src.finetune.tuning.space import load_space
from tests.support.params import params_tree

SPACE = """
metric: val_accuracy
trials: 8
pruner: median
space:
  phase2.lr: {low: 1.0e-5, high: 1.0e-2, log: true}
  phase2.unfreeze_last: {low: 10, high: 60, step: 10}
  augment.flip: {choices: [false, true]}
"""


def space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(text)
    return path


def test_a_space_draws_each_key_with_the_type_params_yaml_wants(tmp_path):
    space = load_space(space_file(tmp_path, SPACE), params_tree())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        drawn = space.suggest(study.ask())
        assert 1e-5 <= drawn["phase2.lr"] <= 1e-2 and isinstance(drawn["phase2.lr"], float)
        assert drawn["phase2.unfreeze_last"] in range(10, 61, 10)
        assert isinstance(drawn["phase2.unfreeze_last"], int)
        assert drawn["augment.flip"] in (False, True)
    assert space.direction == "maximize" and space.trials == 8


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            "phase2.lrr: {low: 0.1, high: 0.2}",
            "space.phase2.lrr is not a params.yaml key; did you mean phase2.lr?",
        ),
        ("phase2.lr: {low: 0.01, high: 0.01}", "space.phase2.lr: the range 0.01..0.01 is empty"),
        ("phase2.lr: {low: 0.1, high: 0.01}", "space.phase2.lr: low 0.1 is above high 0.01"),
        ("phase2.lr: {low: 0.0, high: 0.1, log: true}", "log: true needs low above 0"),
        (
            "phase2.ema: {choices: [0.0, 0.3]}",
            "space.phase2.ema allows 0.3: phase2.ema: 0.3 is not a moving-average decay",
        ),
        (
            "phase2.lr: {low: -1.0, high: 0.1}",
            "space.phase2.lr allows -1.0: phase2.lr: input should be greater than 0",
        ),
        (
            "augment.flip: {choices: [true, 1]}",
            "space.augment.flip allows 1: augment.flip: input should be a valid boolean",
        ),
        ("phase2.lr: {low: 0.001, high: 0.1, lg: true}", "space.phase2.lr.lg: unknown key"),
        (  # both ends are valid, the values between them (0 < ema < 0.5) are not
            "phase1.ema: {low: 0, high: 0.999}",
            "space.phase1.ema allows 0.0999: phase1.ema: 0.0999 is not a moving-average decay",
        ),
        (  # the same inside a log range
            "phase2.ema: {low: 0.01, high: 0.9, log: true}",
            "space.phase2.ema allows 0.01: phase2.ema: 0.01 is not a moving-average decay",
        ),
        (  # and inside an integer one: warm-up epochs must be fewer than the phase's 10
            "phase2.warmup_epochs: {low: 0, high: 20}",
            "space.phase2.warmup_epochs allows 10: phase2.warmup_epochs: 10 must be fewer",
        ),
        ("phase2: {low: 1, high: 2}", "space.phase2 is not a params.yaml key"),
        (
            "augment.flip: {choices: []}",
            "space.augment.flip.choices: list should have at least 1 item",
        ),
    ],
)
def test_a_space_params_yaml_would_refuse_is_one_line_naming_the_key(tmp_path, entry, says):
    text = f"metric: val_accuracy\ntrials: 4\nspace:\n  {entry}\n"
    with pytest.raises(PipelineError) as refused:
        load_space(space_file(tmp_path, text), params_tree())
    message = str(refused.value)
    assert says in message and "\n" not in message and message.startswith(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "metric: accuracy\ntrials: 4\nspace: {phase2.lr: {low: 0.1, high: 0.2}}",
            "metric: input should be 'val_accuracy' or 'val_loss'",
        ),
        (
            "trials: 0\nspace: {phase2.lr: {low: 0.1, high: 0.2}}",
            "trials: input should be greater than or equal to 1",
        ),
        (
            "trials: 4\npruner: hyperband\nspace: {phase2.lr: {low: 0.1, high: 0.2}}",
            "pruner: input should be",
        ),
        ("trials: 4\nspace: {}", "space: dictionary should have at least 1 item"),
        ("trials: 4\nspaces: {}", "spaces: unknown key"),
        (
            "trials: 4\nprune_after: -1\nspace: {phase2.lr: {low: 0.1, high: 0.2}}",
            "prune_after: input should be greater than or equal to 0",
        ),
    ],
)
def test_a_study_file_with_a_bad_setting_is_one_line(tmp_path, text, says):
    with pytest.raises(PipelineError, match=r"tune\.yaml: ") as refused:
        load_space(space_file(tmp_path, text), params_tree())
    assert says in str(refused.value)


def test_the_projects_tune_yaml_is_a_valid_space_over_the_committed_params():
    from tests.support.params import ROOT

    space = load_space(ROOT / "tune.yaml", params_tree())
    assert set(space.space) == {"phase2.lr", "phase2.unfreeze_last", "phase2.label_smoothing"}
    assert space.trials == 20 and space.prune_after == 2
    # fractions of the base: the same space fits every backbone
    assert all(isinstance(v, float) for v in space.space["phase2.unfreeze_last"].examples())
    for backbone in ("efficientnetlite0", "resnet50v2", "convnexttiny"):
        load_space(ROOT / "tune.yaml", params_tree({"model.backbone": backbone,
                                                     "model.weights": "none"}))  # fmt: skip
