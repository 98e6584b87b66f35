"""evaluate's classical reference learns from the training split alone, and its log says when
the fine-tuned model does not beat it."""

import logging

import numpy as np
import pytest

from src.finetune.data.prepared import load_split, save_info, save_split
from src.finetune.data.splits import DataInfo
from src.finetune.evaluation.metrics import ClassicalScores, Metrics, Scores
from src.stages import evaluate
from tests.support.params import project_params


def looks(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An image per label: class 0 dark on the left, class 1 dark on the right."""
    images = rng.integers(180, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    images[labels == 0, :, :16] //= 4
    images[labels == 1, :, 16:] //= 4
    return images


def test_the_reference_never_learns_from_validation_or_test_images(tmp_path):
    """Validation and test images look like the training images of the other class: a
    reference fitted on anything but the training split would get some of them right."""
    rng = np.random.default_rng(0)
    save_info(tmp_path, DataInfo(("left", "right"), "folder", (32, 32, 3)))
    train = np.repeat([0, 1], 40)
    save_split(tmp_path, "train", looks(train, rng), train)
    for name, count in (("val", 10), ("test", 20)):
        labels = np.repeat([0, 1], count)
        save_split(tmp_path, name, looks(1 - labels, rng), labels)
    test = load_split(tmp_path, "test")
    scores = evaluate.classical_scores(tmp_path, test, project_params())
    assert scores.train_images == 80
    assert (scores.predictions != test.labels).all()


def test_none_turns_the_reference_off(tmp_path):
    params = project_params().model_copy(
        update={"evaluate": project_params().evaluate.model_copy(update={"classical": "none"})}
    )
    assert evaluate.classical_scores(tmp_path, None, params) is None


def scores(right: np.ndarray) -> Scores:
    probabilities = np.eye(2)[np.where(right, 0, 1)]
    return Scores(0.1, float(right.mean()), probabilities)


@pytest.mark.parametrize(
    ("classical_right", "beats"), [(60, True), (95, False), (100, False)]
)  # fmt: skip
def test_the_log_says_whether_the_model_beats_the_reference(caplog, classical_right, beats):
    labels = np.zeros(100, int)
    finetuned = scores(np.arange(100) < 97)
    classical = ClassicalScores(np.where(np.arange(100) < classical_right, 0, 1), 500)
    metrics = Metrics.compare(finetuned, finetuned, labels, classical=classical, val=(1.0, None))
    with caplog.at_level(logging.INFO, logger=evaluate.log.name):
        evaluate.log_against_classical(metrics)
    (line,) = caplog.messages
    numbers = f"fine-tuned 0.9700, classical reference {classical_right / 100:.4f}"
    assert numbers in line
    if beats:
        assert line.startswith("the fine-tuned model beats the classical reference beyond noise")
    else:
        assert line.startswith("warning: the fine-tuned model does not beat the classical")
