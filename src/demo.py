"""The offline demo: the whole pipeline on real images that scikit-learn ships, no network.

    make demo        # python -m src.demo

scikit-learn's handwritten digits (1,797 images of 8x8 pixels, 10 classes) are written as PNG
files to ``data/sample/digits/<digit>/``, a folder of your own images as far as the pipeline
can tell. Then every stage runs on them, saved as the experiment ``demo-digits``:
EfficientNet-Lite0 with the ImageNet weights ``make install`` brought (no network), with the
digits recipe (``recipes/digits.yaml``, chosen on validation by a tuning study): 48x48 RGB,
two thirds of the base fine-tuned at 1.4e-3 with its BatchNormalization frozen.

It runs in a workspace of its own, ``.dvc/tmp/demo/worker-<k>`` (a clone of the repository
at its commit, sharing its DVC cache; see ``workspaces``): your params.yaml, git index and
outputs stay as they were, whatever you edit meanwhile, and two demos may run at once. The
experiment is pushed to your repository (`dvc exp show`, `dvc exp apply demo-digits`), the
runs go to your MLflow store (`make ui`), and the demo's outputs stay in its workspace.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from src.finetune.entrypoint import run_process
from src.finetune.environment import repository_root
from src.finetune.errors import PipelineError
from src.finetune.files import atomic_dir
from src.finetune.params import apply_overrides, check_params, read_yaml
from src.finetune.tracking import backend
from src.finetune.workspaces import claim_workspace, demo_folder, run_experiment
from src.recipes import load_recipe

NAME = "demo"
FOLDER = Path("data/sample/digits")
EXPERIMENT = "demo-digits"
RECIPE = "digits"  # recipes/digits.yaml
DATA = {
    "data.source": "folder",
    "data.folder": FOLDER.as_posix(),
    "model.backbone": "efficientnetlite0",
    "model.weights": "imagenet",
}


def demo_overrides(root: Path = Path()) -> dict[str, object]:
    """What the demo sets on top of params.yaml: its digits folder, Lite0 and the recipe."""
    return DATA | load_recipe(RECIPE, root)


def write_digits(folder: Path) -> int:
    """scikit-learn's digits as 8x8 greyscale PNG files, one sub-folder per digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    with atomic_dir(folder) as partial:
        for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            path = partial / str(label) / f"{index:04d}.png"
            path.parent.mkdir(exist_ok=True)
            # 0-16 ink in the dataset, white paper and black ink here
            image = (255 - pixels * 255 / 16).round().astype(np.uint8)
            Image.fromarray(image, "L").save(path)
    return len(digits.target)


def share_digits(source: Path, target: Path) -> None:
    """The digits in the repository too (data/sample/, ignored by git), where the demo's
    params look for them once `dvc exp apply demo-digits` made them yours; written once,
    never over a folder already there, by one demo when several finish together."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(source, partial, dirs_exist_ok=True)
        os.rename(partial, target)  # refused if another demo put its copy there first
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    dvc = shutil.which("dvc")
    if dvc is None:
        raise PipelineError("dvc not found; run `make install`, then `make demo`")
    root = repository_root()
    workspace = claim_workspace(demo_folder(root), root, {}, dvc)
    params_path = workspace.path / "params.yaml"
    # the committed params, comments kept: `dvc exp apply demo-digits` brings this file back
    overrides = {"model.backbone": "efficientnetlite0", "model.weights": "imagenet"} | DATA
    demo = apply_overrides(
        read_yaml(params_path, keep_comments=True), overrides | load_recipe(RECIPE)
    )
    workspace = dataclasses.replace(workspace, base_params=demo)
    params = check_params(demo, where=params_path)
    tracker = backend(params)
    tracker.prepare(params)  # from the repository: where its runs and artifacts go
    count = write_digits(workspace.path / FOLDER)
    where = workspace.path.relative_to(root)
    print(f"wrote {count} digit images to {where / FOLDER}/; running the pipeline in {where}/",
          flush=True)  # fmt: skip
    env = os.environ | {"DVC_EXP_NAME": EXPERIMENT} | tracker.workspace_env(root)
    run_experiment(workspace, {}, EXPERIMENT, dvc, env)
    share_digits(workspace.path / FOLDER, root / FOLDER)
    print(
        f"""
Done: experiment {EXPERIMENT} (scikit-learn digits, EfficientNet-Lite0, ImageNet weights).
  report   {where}/reports/report.md
  figure   {where}/reports/figures/validation_curves.png
  metrics  dvc exp show --drop '.*' --keep '^(Experiment|finetuned_accuracy|gain_over_classical)$'
  MLflow   make ui     (the experiment {params.mlflow_experiment})
Your params.yaml, git index and outputs are untouched; `dvc exp apply {EXPERIMENT}` brings the
demo's params and outputs into your workspace (the digits are in {FOLDER}/).""",
        flush=True,
    )


if __name__ == "__main__":
    run_process(NAME, main)
