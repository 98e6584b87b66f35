"""The offline demo: the whole pipeline on real images that scikit-learn ships, no network.

    make demo        # python -m src.demo

scikit-learn's handwritten digits (1,797 images of 8x8 pixels, 10 classes) are written as PNG
files to ``data/sample/digits/<digit>/``, a folder of your own images as far as the pipeline
can tell; `prepare` upscales them to 96x96 RGB. Then every stage runs on them, saved as the
experiment ``demo-digits``: EfficientNet-Lite0 with the ImageNet weights ``make install``
brought (no network), phase-1 lr 3e-3 for the new head and phase-2 lr 1e-4, ten times the
course's, since digits are far from ImageNet's photos.
``params.yaml`` is put back as it was afterwards, whatever happens: the demo's params live on
in the experiment (`dvc exp show`) and in MLflow, not in your workspace's params, so a
`dvc repro` after it runs your own experiment, not the demo's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from src.finetune.entrypoint import run_stage
from src.finetune.errors import PipelineError
from src.finetune.experiments import run_command, save_experiment
from src.finetune.files import atomic_dir
from src.finetune.params import apply_overrides, read_yaml, write_params

NAME = "demo"
FOLDER = Path("data/sample/digits")
EXPERIMENT = "demo-digits"
OVERRIDES = {
    "data.source": "folder",
    "data.folder": FOLDER.as_posix(),
    "data.image_size": 96,
    "model.backbone": "efficientnetlite0",
    "model.weights": "imagenet",
    "phase1.lr": 0.003,
    "phase2.lr": 0.0001,
}
PARAMS = Path("params.yaml")


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


def run_experiment(dvc: str) -> None:
    """`dvc repro` with the demo's params, saved as the experiment ``demo-digits``;
    ``params.yaml`` is restored afterwards, whatever happens."""
    original = PARAMS.read_bytes()
    env = os.environ | {"DVC_EXP_NAME": EXPERIMENT}  # names the MLflow comparison run
    try:
        write_params(PARAMS, apply_overrides(read_yaml(PARAMS), OVERRIDES))
        subprocess.run([dvc, "exp", "remove", EXPERIMENT], capture_output=True, check=False)
        run_command([dvc, "repro"], env=env)
        save_experiment(dvc, EXPERIMENT, env=env)
    finally:
        PARAMS.write_bytes(original)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    dvc = shutil.which("dvc")
    if dvc is None:
        raise PipelineError("dvc not found; run `make install`, then `make demo`")
    count = write_digits(FOLDER)
    print(f"wrote {count} digit images to {FOLDER}/; running the pipeline on them", flush=True)
    run_experiment(dvc)
    print(
        f"""
Done: experiment {EXPERIMENT} (scikit-learn digits, EfficientNet-Lite0, ImageNet weights).
  report   reports/report.md
  figure   reports/figures/validation_curves.png
  metrics  dvc metrics show      (all experiments: dvc exp show --only-changed)
  MLflow   make ui               (then open the link it prints)
params.yaml is as it was: `dvc repro` runs your own experiment, not the demo.""",
        flush=True,
    )


if __name__ == "__main__":
    run_stage(NAME, main)
