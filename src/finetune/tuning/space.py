"""The search space of a tuning study (``tune.yaml``), checked against the params schema before
any trial runs.

A key is any params.yaml key, dotted as ``dvc exp run -S`` writes it. A range (``low``,
``high``, optional ``log`` or ``step``) is drawn as an integer when both ends are integers, as
a float otherwise; ``choices`` lists the values to pick from. Every end of a range and every
choice must give params.yaml params that the stages accept, so a trial never fails on a value
the space allowed.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from src.finetune.errors import PipelineError
from src.finetune.params import apply_overrides, check_params, read_yaml

# What a study can maximise or minimise: a column of the last training phase's history.
DIRECTIONS = {"val_accuracy": "maximize", "val_loss": "minimize"}
INTERIOR = 9  # points inside a range checked against the params schema, besides its ends
Choice = bool | int | float | str | None


class Range(BaseModel):
    """Numbers from ``low`` to ``high``: integers when both ends are."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _a_range(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}; swap them")
        if self.low == self.high:
            raise ValueError(f"the range {self.low}..{self.high} is empty; widen it")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range is either log or stepped; drop one of log and step")
        return self

    @property
    def integers(self) -> bool:
        return all(isinstance(value, int) for value in (self.low, self.high, self.step or 1))

    def suggest(self, trial: optuna.Trial, key: str) -> int | float:
        if self.integers:
            return trial.suggest_int(key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)

    def examples(self) -> list[int | float]:
        """The ends and points between them (evenly spaced, on the log scale with ``log``):
        a value the params refuse inside the range (``ema`` from 0 to 0.999 takes 0.37) is
        found before a trial draws it, not by the trial."""
        if self.log:
            points = np.geomspace(self.low, self.high, INTERIOR + 2)
        else:
            points = np.linspace(self.low, self.high, INTERIOR + 2)
        if self.integers:
            step = self.step or 1
            values = {int(self.low + round((p - self.low) / step) * step) for p in points}
            return sorted(v for v in values if v <= self.high)
        return [self.low, *(float(p) for p in points[1:-1]), self.high]


class Choices(BaseModel):
    """One of the listed values."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    choices: list[Choice] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_once(self) -> Choices:
        if len({json.dumps(choice) for choice in self.choices}) != len(self.choices):
            raise ValueError(f"{self.choices} lists a value twice; list each once")
        return self

    def suggest(self, trial: optuna.Trial, key: str) -> Choice:
        return trial.suggest_categorical(key, self.choices)

    def examples(self) -> list[Choice]:
        return list(self.choices)


def _kind(value: Any) -> str:
    return "a choice list" if isinstance(value, dict) and "choices" in value else "a range"


Dimension = Annotated[
    Annotated[Range, Tag("a range")] | Annotated[Choices, Tag("a choice list")],
    Discriminator(_kind),
]


class SearchSpace(BaseModel):
    """A study: what it optimises, how many trials it runs, how it prunes, what it varies."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    trials: Annotated[int, Field(ge=1, le=10_000)]
    pruner: Literal["median", "successive_halving", "none"] = "median"
    # Epochs of the fine-tuning phase every trial runs before the pruner may stop it: a high
    # rate often starts worse and ends better, and would be stopped after its first epoch.
    prune_after: Annotated[int, Field(ge=0, le=10_000)] = 0
    space: dict[str, Dimension] = Field(min_length=1)

    @property
    def direction(self) -> str:
        return DIRECTIONS[self.metric]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The params overrides of one trial, drawn by the study's sampler."""
        return {key: dimension.suggest(trial, key) for key, dimension in self.space.items()}

    def fingerprint(self) -> str:
        """What a study is bound to: the same metric and space (the trial count may grow)."""
        space = {key: value.model_dump(mode="json") for key, value in self.space.items()}
        return json.dumps({"metric": self.metric, "space": space}, sort_keys=True)


def load_space(path: Path, params_tree: dict[str, Any]) -> SearchSpace:
    """``path`` as a ``SearchSpace`` whose every key and value params.yaml accepts, or one
    line naming the first problem."""
    raw = read_yaml(path)
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as error:
        raise PipelineError(f"{path}: {_first_problem(error)}") from None
    known = list(check_params(params_tree, Path("params.yaml")).flat())
    for key, dimension in space.space.items():
        if key not in known:
            guess = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {guess[0]}?" if guess else "; use a key of params.yaml"
            raise PipelineError(f"{path}: space.{key} is not a params.yaml key{hint}")
        for value in dimension.examples():
            try:
                check_params(apply_overrides(params_tree, {key: value}), Path("params.yaml"))
            except PipelineError as error:
                reason = str(error).removeprefix("params.yaml: ")
                raise PipelineError(f"{path}: space.{key} allows {value!r}: {reason}") from None
    return space


def _first_problem(error: ValidationError) -> str:
    """The first thing pydantic refused, as ``key: what is wrong``; an unknown key first (a
    typo, and the cause of the "missing" beside it)."""
    detail = min(error.errors(), key=lambda d: d["type"] != "extra_forbidden")
    key = ".".join(str(part) for part in detail["loc"] if part not in ("a range", "a choice list"))
    if detail["type"] == "extra_forbidden":
        return (
            f"{key}: unknown key; a study has metric, trials, pruner, prune_after and space, a "
            "range has "
            "low, high, log and step, a choice list has choices"
        )
    if detail["type"] == "missing":
        return f"{key}: missing; see the comments in tune.yaml"
    message = detail["msg"].removeprefix("Value error, ")
    return f"{key}: {message[0].lower()}{message[1:]}" if key else message
