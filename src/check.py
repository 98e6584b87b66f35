"""Check params.yaml as every stage checks it, before a command hands it to DVC.

    make check        # python -m src.check [params.yaml]

`make repro`, `make tune` and `make strong-recipe` run it first: DVC reads params.yaml
itself before any stage starts, and a file it cannot take (a few hundred bytes of YAML
aliases expand to gigabytes in DVC's own reader) is then one line here rather than DVC's
traceback or all the memory. Plain `dvc repro` skips this check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.finetune.entrypoint import run_process
from src.finetune.params import load_params

NAME = "check"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="?", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    print(
        f"{args.params}: valid ({params.data.name}, {params.backbone.title}, "
        f"{params.model.weights} weights)"
    )


if __name__ == "__main__":
    run_process(NAME, main)
