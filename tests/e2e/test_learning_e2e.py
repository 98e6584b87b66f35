"""Learning, not only plumbing: the real pipeline on real photos (Fashion-MNIST, from Debian's
dataset-fashion-mnist, which .ci/run installs) learns far more from EfficientNet-Lite0's
ImageNet weights than from the same network with random weights, same recipe."""

import json

import pytest

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
    "phase2.epochs": 1,
}


def test_imagenet_weights_beat_random_weights_by_a_clear_margin(tmp_path):
    repo = make_project(tmp_path / "repo", RECIPE)
    # 30 training and 20 test photos per class, from the package's own train and test sets
    fashion_mnist.write_folder(repo / "data/fashion", train_per_class=30, test_per_class=20)
    run(repo, "git", "add", "data/fashion")
    run(repo, "git", "commit", "-qm", "Fashion-MNIST sample")
    # Up to evaluate, which measures both phases on the test photos: the exports and the
    # report add nothing to what this test reads.
    repro_and_commit(repo, "evaluate")
    pretrained = json.loads((repo / "reports/metrics.json").read_text())
    run(repo, "dvc", "exp", "run", "-n", "random", "-S", "model.weights=none", "evaluate")
    random = json.loads((repo / "reports/metrics.json").read_text())
    assert pretrained["test_images"] == random["test_images"] == 200
    assert pretrained["baseline_accuracy"] >= 0.6, pretrained
    assert pretrained["baseline_accuracy"] - random["baseline_accuracy"] >= 0.25, (
        pretrained,
        random,
    )
