"""params.yaml for tests: the project's, as committed, with dotted-key overrides.

Tests never read the workspace's params.yaml: a user's sweep (`dvc exp run -S ...` leaves its
values there) or an edit must not change what the suite checks. They read the file as the
last commit has it.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN, TINY_TEST = 200, 60
REMOVE = object()  # as an override's value: delete the key


@functools.cache
def committed_params() -> str:
    """params.yaml as the last commit holds it, comments and all."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", "HEAD:params.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, (
        f"the tests read params.yaml as committed (git show HEAD:params.yaml): {shown.stderr}"
    )
    return shown.stdout


def tiny_overrides(archive: str, sha256: str) -> dict[str, Any]:
    return {
        "data.archive": archive,
        "data.sha256": sha256,
        "model.backbone": "tinynet",  # 21 layers: the stages run in seconds
        "model.weights": "none",
        "phase1.epochs": 2,
        "phase1.batch_size": 32,
        "phase2.epochs": 2,
        "phase2.batch_size": 32,
        "phase2.lr": 1e-3,
        "phase2.unfreeze_last": 8,  # block3a and the top convolution of TinyNet's 21 layers
        # Exporting costs half a minute a run; the tests of the export stage ask for it.
        "export.formats": [],
    }


def params_tree(overrides: dict[str, Any] | None = None) -> Any:
    """The committed params with dotted-key overrides, as a ruamel tree (comments kept)."""
    yaml = YAML()
    tree = yaml.load(committed_params())
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node[section]
        if value is REMOVE:
            del node[key]
        else:
            node[key] = value
    return tree


def write_params(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """The project's params.yaml (as committed) with dotted-key overrides, comments kept."""
    with path.open("w") as handle:
        YAML().dump(params_tree(overrides), handle)
    return path


def project_params():
    """The committed params, validated."""
    from src.finetune.params import Params

    return Params.model_validate(YAML(typ="safe", pure=True).load(committed_params()))


def edit_params(path: Path, overrides: dict[str, Any]) -> None:
    """Dotted-key overrides written into a project's own params.yaml (as a user edits it,
    comments kept), whatever its values are now."""
    from src.finetune.params import apply_overrides, read_yaml
    from src.finetune.params import write_params as write_yaml

    write_yaml(path, apply_overrides(read_yaml(path), overrides))
