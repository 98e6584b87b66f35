"""Named recipes: sets of params on top of params.yaml, run as named DVC experiments.

    python -m src.recipes strong      # prints the `-S key=value` arguments

A recipe is a YAML file in ``recipes/`` mapping dotted keys (``phase2.lr``) to values. It
is checked against the params schema, applied to params.yaml, before anything runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from src.finetune.entrypoint import run_process
from src.finetune.errors import PipelineError
from src.finetune.params import apply_overrides, check_params, read_yaml


def load_recipe(name: str, root: Path = Path()) -> dict[str, Any]:
    """The overrides of ``recipes/<name>.yaml`` (or of the YAML file ``name``, such as a tuning
    study's best trial), once they give valid params.yaml params."""
    recipes = root / "recipes"
    path = root / name if name.endswith((".yaml", ".yml")) else recipes / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in recipes.glob("*.yaml"))) or "none"
        raise PipelineError(f"{path} not found; recipes here: {known}")
    overrides = read_yaml(path)
    try:
        tree = apply_overrides(read_yaml(root / "params.yaml"), overrides)
    except PipelineError as error:
        raise PipelineError(f"{path}: {error}") from None
    check_params(tree, where=path)
    return overrides


def set_arguments(overrides: dict[str, Any]) -> list[str]:
    """`dvc exp run` arguments that set each key: ``-S phase2.lr=0.0001``, each value written
    so that DVC, which reads it as YAML, gets it back with its type (``"123"`` stays text)."""
    return [part for key, value in overrides.items() for part in ("-S", f"{key}={_yaml(value)}")]


def _yaml(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = str(value)
    if isinstance(value, str) and YAML(typ="safe", pure=True).load(text or "''") != value:
        return json.dumps(value)  # JSON strings are YAML strings
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "name", help="a recipe in recipes/ (strong), or a YAML file (reports/tuning/tune-best.yaml)"
    )
    parser.add_argument(
        "--run", action="store_true", help="run it as the DVC experiment <name>-recipe"
    )
    args = parser.parse_args(argv)
    arguments = set_arguments(load_recipe(args.name))
    if not args.run:
        print(shlex.join(arguments))
        return
    # No shell between the recipe and DVC: a value with spaces stays one argument.
    command = ["dvc", "exp", "run", "-n", f"{Path(args.name).stem}-recipe", *arguments]
    print(shlex.join(command), flush=True)
    os.execvp("dvc", command)


if __name__ == "__main__":
    run_process("recipes", main)
