"""The study: bound to its space, its pruner rebuilt the same way in every process, its
workers drawing different params, its files rebuilt from the storage."""

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from src.finetune.errors import PipelineError
from src.finetune.params import apply_overrides
from src.finetune.tuning.pruners import make_pruner
from src.finetune.tuning.results import study_results, write_results
from src.finetune.tuning.space import SearchSpace
from src.finetune.tuning.study import open_study, progress, safe_url, worker_seed
from src.recipes import load_recipe
from tests.support.params import write_params

LR = {"phase2.lr": {"low": 1e-5, "high": 1e-2, "log": True}}


def space(trials: int = 4, **dimensions) -> SearchSpace:
    return SearchSpace.model_validate({"trials": trials, "space": dimensions or LR})


def test_a_study_is_created_once_and_joined_with_the_same_space(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = open_study(space(), "lr", storage)
    first.add_trial(
        create_trial(
            params={"phase2.lr": 1e-3},
            distributions={"phase2.lr": FloatDistribution(1e-5, 1e-2, log=True)},
            value=0.5,
        )
    )
    again = open_study(space(trials=40), "lr", storage)  # more trials: the same study
    assert len(again.trials) == 1 and again.user_attrs["metric"] == "val_accuracy"
    assert again.user_attrs["pruner"] == ["median", 4, 0]


def test_joining_a_study_with_another_space_is_one_line(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    open_study(space(), "lr", storage)
    other = {"phase2.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    with pytest.raises(
        PipelineError, match=r"study 'lr' already exists .* with another search space"
    ):
        open_study(space(**other), "lr", storage)


def test_a_storage_that_does_not_open_is_one_line_without_its_password():
    url = "postgresql://tuner:s3cret@127.0.0.1:1/studies"
    with pytest.raises(PipelineError) as refused:
        open_study(space(), "lr", url)
    assert "cannot open the study storage postgresql://tuner:***@127.0.0.1:1/studies" in str(
        refused.value
    )
    assert "s3cret" not in str(refused.value)
    assert safe_url("sqlite:///optuna.db") == "sqlite:///optuna.db"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_each_pruner_name_makes_its_optuna_pruner(name, kind):
    assert isinstance(make_pruner(name, 20), kind)


@pytest.mark.parametrize("name", ["median", "successive_halving"])
def test_no_pruner_stops_a_trial_within_its_first_prune_after_epochs(name):
    """Epochs count from 1, as the stage reports them: with prune_after 2, a trial far
    behind the others runs epochs 1 and 2 and may be stopped from epoch 3 on."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner(name, 4, prune_after=2))
    for _ in range(4):
        done = study.ask()
        for epoch in range(1, 6):
            done.report(0.9, epoch)
            done.should_prune()  # as the stage asks after every epoch
        study.tell(done, 0.9)
    trial = study.ask()
    stops = []
    for epoch in range(1, 6):
        trial.report(0.1, epoch)
        stops.append(trial.should_prune())
    assert stops[:2] == [False, False] and any(stops[2:])


def test_the_median_pruner_waits_for_a_quarter_of_the_trials_up_to_five():
    assert make_pruner("median", 4)._n_startup_trials == 1
    assert make_pruner("median", 12)._n_startup_trials == 3
    assert make_pruner("median", 200)._n_startup_trials == 5


def test_workers_draw_different_params_and_the_first_one_on_a_new_study_the_seeded_ones():
    assert worker_seed(42, 0, shared=False, trials_so_far=0) == 42
    seeds = {
        worker_seed(42, index, shared, so_far)
        for index in range(2)
        for shared in (False, True)
        for so_far in (0, 10)
    }
    assert len(seeds) == 8


def finished_study(tmp_path: Path) -> optuna.Study:
    study = open_study(space(), "lr", f"sqlite:///{tmp_path / 'optuna.db'}")
    lr = {"phase2.lr": FloatDistribution(1e-5, 1e-2, log=True)}
    for number, (rate, value, state) in enumerate(
        [(1e-3, 0.6, TrialState.COMPLETE), (3e-4, 0.8, TrialState.COMPLETE),
         (1e-5, None, TrialState.PRUNED), (2e-3, 0.7, TrialState.COMPLETE)]
    ):  # fmt: skip
        steps = {1: 0.3, 2: 0.5} if state == TrialState.PRUNED else {1: 0.4, 2: 0.5, 3: value}
        study.add_trial(
            create_trial(
                params={"phase2.lr": rate}, distributions=lr, value=value, state=state,
                intermediate_values=steps,
                user_attrs={} if value is None else {"experiment": f"lr-{number}"},
            )
        )  # fmt: skip
    return study


def test_the_results_list_every_trial_and_the_best_one_replays_as_a_recipe(tmp_path):
    study = finished_study(tmp_path)
    write_params(tmp_path / "params.yaml")
    files = write_results(study, study_results(study), tmp_path / "reports/tuning")
    assert [path.name for path in files] == [
        "lr.json",
        "lr-best.yaml",
        "lr-history.png",
        "lr-importance.png",
    ]
    results = study_results(study)
    assert [t.state for t in results.trials] == ["complete", "complete", "pruned", "complete"]
    assert (results.count("complete"), results.count("pruned"), results.count("fail")) == (3, 1, 0)
    assert results.best.number == 1 and results.best.experiment == "lr-1"
    assert results.trials[2].experiment is None and results.trials[2].epochs == 2
    assert results.epochs == 3 + 3 + 2 + 3
    best = load_recipe("reports/tuning/lr-best.yaml", tmp_path)
    assert best == {"phase2.lr": 3e-4}
    assert apply_overrides({"phase2": {"lr": 1.0}}, best) == {"phase2": {"lr": 3e-4}}
    assert "trial 1, val_accuracy 0.8000" in (tmp_path / "reports/tuning/lr-best.yaml").read_text()
    assert progress(study, 4).left == 0 and progress(study, 6).left == 2
