"""Learning, not only plumbing: the real pipeline on real photos (Fashion-MNIST, from Debian's
dataset-fashion-mnist, which .ci/run installs) learns far more from EfficientNet-Lite0's
ImageNet weights than from the same network with random weights, same recipe.

The weights decide phase 1, which trains a head on the frozen base: `dvc repro` and `dvc exp
run` go as far as `phase1_extract`, and each checkpoint is scored on the 200 test photos with
`evaluate`'s own scoring (the stages after it are the other end-to-end tests')."""

from pathlib import Path

import pytest

from src.finetune.data.prepared import load_split
from src.finetune.evaluation.scoring import score
from src.finetune.model.checkpoints import load_checkpoint
from tests.support.commands import repro_and_commit, run
from tests.support.projects import make_project
from workbench import fashion_mnist

pytestmark = pytest.mark.e2e

RECIPE = {
    "data.source": "folder",
    "data.folder": "data/fashion",
    "data.image_size": 64,
    "model.backbone": "efficientnetlite0",
    "model.weights": "imagenet",
    "phase1.lr": 0.003,
}


def phase1_test_accuracy(repo: Path) -> float:
    model = load_checkpoint(repo / "models/phase1.keras", made_by="phase1_extract")
    test = load_split(repo / "data/prepared", "test")
    assert len(test) == 200
    return score(model, test).accuracy


def test_imagenet_weights_beat_random_weights_by_a_clear_margin(tmp_path):
    repo = make_project(tmp_path / "repo", RECIPE)
    # 30 training and 20 test photos per class, from the package's own train and test sets
    fashion_mnist.write_folder(repo / "data/fashion", train_per_class=30, test_per_class=20)
    run(repo, "git", "add", "data/fashion")
    run(repo, "git", "commit", "-qm", "Fashion-MNIST sample")
    repro_and_commit(repo, "phase1_extract")
    pretrained = phase1_test_accuracy(repo)
    run(repo, "dvc", "exp", "run", "-n", "random", "-S", "model.weights=none", "phase1_extract")
    random = phase1_test_accuracy(repo)
    assert pretrained >= 0.6, pretrained
    assert pretrained - random >= 0.25, (pretrained, random)
