"""What a study leaves in ``reports/tuning/``: every trial (``<study>.json``), the best trial's
params as a recipe (``<study>-best.yaml``) and Optuna's figures, rebuilt from the study's
storage, so any worker, on any machine, writes the same files."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict

from src.finetune.files import atomic_path, write_json
from src.finetune.params import write_params
from src.finetune.tuning.study import best_trial

EXPERIMENT = "experiment"  # the trial's user attribute naming its DVC experiment
log = logging.getLogger(__name__)


class TrialRecord(BaseModel):
    """One trial as ``<study>.json`` lists it."""

    model_config = ConfigDict(frozen=True)

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    epochs: int  # epochs the reporting phase trained (its reports to the study)
    experiment: str | None  # the DVC experiment; None when the trial stopped before saving one


class StudyResults(BaseModel):
    model_config = ConfigDict(frozen=True)

    study: str
    metric: str
    direction: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    epochs: int  # in all trials together: what pruning saves

    def count(self, state: str) -> int:
        """How many trials ended in ``state`` (complete, pruned, fail)."""
        return sum(trial.state == state for trial in self.trials)


def record(trial: FrozenTrial) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        state=trial.state.name.lower(),
        params=trial.params,
        value=trial.value,
        epochs=len(trial.intermediate_values),
        experiment=trial.user_attrs.get(EXPERIMENT),
    )


def study_results(study: optuna.Study) -> StudyResults:
    trials = [record(trial) for trial in study.get_trials(deepcopy=False)]
    best = best_trial(study)
    return StudyResults(
        study=study.study_name,
        metric=results_metric(study),
        direction=study.direction.name.lower(),
        trials=trials,
        best=record(best) if best else None,
        epochs=sum(trial.epochs for trial in trials),
    )


def write_results(study: optuna.Study, results: StudyResults, folder: Path) -> list[Path]:
    """``<study>.json``, and once a trial completed ``<study>-best.yaml`` and the figures;
    returns the files written."""
    written = [folder / f"{study.study_name}.json"]
    write_json(written[0], results.model_dump(mode="json"))
    if results.best is None:
        return written
    best = folder / f"{study.study_name}-best.yaml"
    header = (
        f"# The best trial of the tuning study {study.study_name}: trial {results.best.number}, "
        f"{results.metric} {results.best.value:.4f} (DVC experiment {results.best.experiment}).\n"
        f"# Replay it as a DVC experiment: python -m src.recipes {_shown(best)} --run\n"
    )
    with atomic_path(best) as partial:
        write_params(partial, results.best.params)
        partial.write_text(header + partial.read_text())
    written.append(best)
    return written + write_figures(study, folder)


def write_figures(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's optimisation history and, with two completed trials or more, its parameter
    importances, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as figures

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawings = {"history": figures.plot_optimization_history}
    if len(completed) >= 2 and len(study.best_trial.params) >= 1:
        drawings["importance"] = figures.plot_param_importances
    written = []
    for name, draw in drawings.items():
        path = folder / f"{study.study_name}-{name}.png"
        with warnings.catch_warnings():  # Optuna marks its matplotlib figures experimental
            warnings.simplefilter("ignore")
            try:
                axes = draw(study, target_name=results_metric(study))
            except (ValueError, RuntimeError) as error:  # e.g. one value for every param
                log.info("no %s figure: %s", name, error)
                continue
        with atomic_path(path) as partial:
            axes.figure.savefig(partial, dpi=120, bbox_inches="tight")
        plt.close(axes.figure)
        written.append(path)
    return written


def _shown(path: Path) -> str:
    """``path`` as typed from the repository root, where the tools run."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def results_metric(study: optuna.Study) -> str:
    """The metric the study optimises, as its figures name their axis."""
    return study.user_attrs.get("metric", "val_accuracy")
