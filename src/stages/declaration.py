"""Each stage declared once: its name, the params sections it reads, the files it reads and
writes. Its command-line arguments, the lineage its tracker records and the files it logs all
come from the declaration; ``tests/stages/test_dvc_yaml.py`` checks that dvc.yaml agrees.

A new stage is its script in ``src/stages/``, a ``Stage`` at the top of it, and its entry in
dvc.yaml (``Stage.command()`` is its ``cmd``).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NoReturn

from src.finetune.entrypoint import run_process
from src.finetune.params import Params
from src.finetune.tracking import SafeTracker, track_stage


class Log(Enum):
    """Where a stage logs a file it read or wrote, besides recording its lineage."""

    NO = "no"  # lineage only (models are logged as models, data is too large)
    STAGE = "stage"  # an artifact of the stage's run
    COMPARISON = "comparison"  # an artifact of the stage's run and of the comparison run


@dataclass(frozen=True)
class File:
    """A path a stage reads or writes, as dvc.yaml names it."""

    path: str
    help: str
    log: Log = Log.NO


@dataclass(frozen=True)
class Stage:
    """A DVC stage: ``inputs`` are deps made by other stages, ``outputs`` its outs (and
    metrics), ``backup`` the per-epoch backup of a training stage (neither: git-ignored,
    present only after a kill). Each becomes a ``--<name>`` option of the stage's command."""

    name: str
    doc: str
    params: tuple[str, ...]
    inputs: Mapping[str, File] = field(default_factory=dict)
    outputs: Mapping[str, File] = field(default_factory=dict)
    backup: File | None = None

    @property
    def files(self) -> dict[str, File]:
        backup = {"backup-dir": self.backup} if self.backup else {}
        return {**self.inputs, **self.outputs, **backup}

    @property
    def resumable(self) -> bool:
        """A training stage: a stopped one resumes from its backup."""
        return self.backup is not None

    def arguments(self) -> list[str]:
        """The declared paths as the stage's command passes them."""
        return [part for name, file in self.files.items() for part in (f"--{name}", file.path)]

    def command(self) -> str:
        """The stage's ``cmd`` in dvc.yaml."""
        return shlex.join(["python", "-m", f"src.stages.{self.name}", *self.arguments()])

    def parse(self, argv: list[str] | None = None) -> StagePaths:
        """The paths the command line gives (each option required, as DVC passes them all)."""
        parser = argparse.ArgumentParser(
            prog=f"python -m src.stages.{self.name}", description=self.doc
        )
        for name, file in self.files.items():
            parser.add_argument(f"--{name}", type=Path, required=True, help=file.help)
        args = vars(parser.parse_args(argv))
        return StagePaths(self, {name: args[name.replace("-", "_")] for name in self.files})

    def run(self, main: Callable[[], None]) -> NoReturn:
        """Run ``main`` as this stage's process (see ``entrypoint.run_process``). Only the
        stage's ``__main__`` calls this: tests call ``run_stage`` in their own process."""
        run_process(self.name, main, resumable=self.resumable)

    @contextlib.contextmanager
    def tracked(
        self, params: Params, paths: StagePaths, enabled: bool = True
    ) -> Iterator[SafeTracker]:
        """The stage's tracker (see ``tracking.track_stage``), its inputs linked to the runs
        that made them."""
        with track_stage(self.name, params, self.params, enabled) as tracker:
            tracker.link_inputs(paths.inputs())
            yield tracker

    def record(self, tracker: SafeTracker, paths: StagePaths) -> None:
        """Once the outputs are written: their lineage, and the files the stage logs."""
        tracker.record_outputs(paths.outputs())
        for where, comparison in ((Log.STAGE, False), (Log.COMPARISON, True)):
            logged = [paths.values[name] for name, file in self.files.items() if file.log is where]
            if logged:
                tracker.log_artifacts(logged, comparison=comparison)


@dataclass(frozen=True)
class StagePaths:
    """The paths a stage was given, by option name: ``paths.per_class`` is ``--per-class``."""

    stage: Stage
    values: dict[str, Path]

    def __getattr__(self, attribute: str) -> Path:
        try:
            return self.values[attribute.replace("_", "-")]
        except KeyError:
            raise AttributeError(attribute) from None

    def inputs(self) -> tuple[Path, ...]:
        return tuple(self.values[name] for name in self.stage.inputs)

    def outputs(self) -> tuple[Path, ...]:
        return tuple(self.values[name] for name in self.stage.outputs)
