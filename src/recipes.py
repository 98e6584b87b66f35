"""Named recipes: sets of params on top of params.yaml, run as named DVC experiments.

    python -m src.recipes strong      # prints the `-S key=value` arguments

A recipe is a YAML file in ``recipes/`` mapping dotted keys (``phase2.lr``) to values. It
is checked against the params schema, applied to params.yaml, before anything runs.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from src.finetune.entrypoint import run_stage
from src.finetune.errors import PipelineError
from src.finetune.params import check_params, read_yaml


def load_recipe(name: str, root: Path = Path()) -> dict[str, Any]:
    """The overrides of ``recipes/<name>.yaml``, once they give valid params.yaml params."""
    recipes = root / "recipes"
    path = recipes / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in recipes.glob("*.yaml"))) or "none"
        raise PipelineError(f"{path} not found; recipes here: {known}")
    overrides = read_yaml(path)
    check_params(apply(read_yaml(root / "params.yaml"), overrides), where=path)
    return overrides


def apply(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with each dotted key of ``overrides`` set, as `dvc exp run -S` would set it."""
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return tree


def write_params(path: Path, tree: dict[str, Any]) -> None:
    """A params tree to ``path``, the YAML DVC writes (block style, keys in order)."""
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as handle:
        yaml.dump(tree, handle)


def set_arguments(overrides: dict[str, Any]) -> list[str]:
    """`dvc exp run` arguments that set each key: ``-S phase2.lr=0.0001``."""
    arguments = []
    for key, value in overrides.items():
        text = "true" if value is True else "false" if value is False else value
        arguments += ["-S", f"{key}={'null' if value is None else text}"]
    return arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a recipe in recipes/, e.g. strong")
    args = parser.parse_args(argv)
    print(shlex.join(set_arguments(load_recipe(args.name))))


if __name__ == "__main__":
    run_stage("recipes", main)
