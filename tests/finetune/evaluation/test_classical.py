"""The classical reference: fitted on the training images it is given and no others, bounded
in what it reads, grey where the images are, each kind a working classifier."""

import numpy as np
import pytest

from src.finetune.data.splits import Split
from src.finetune.evaluation import classical
from src.finetune.evaluation.classical import KINDS, SIDE, fit_classical, is_grey


def two_looks(count: int, rng: np.random.Generator, colour: bool = False) -> np.ndarray:
    """``count`` images of each of two looks: a dark left half, or a dark right half."""
    images = rng.integers(180, 256, (2 * count, 40, 40, 3), dtype=np.uint8)
    images[:count, :, :20] //= 4
    images[count:, :, 20:] //= 4
    if not colour:
        images[..., 1] = images[..., 2] = images[..., 0]
    return images


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_learns_what_tells_the_classes_apart(kind):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    model = fit_classical(kind, Split(two_looks(30, rng), labels, 2), limit=1000, seed=0)
    test = two_looks(10, rng)
    assert (model.predict(test) == np.repeat([0, 1], 10)).all()
    assert model.train_images == 60 and model.grey


def test_it_answers_from_the_training_labels_it_was_given():
    """Test images that look like the training images but carry the other labels: a model
    that learnt from the training split gets every one wrong."""
    rng = np.random.default_rng(1)
    train = Split(two_looks(30, rng), np.repeat([0, 1], 30), 2)
    model = fit_classical("svc", train, limit=1000, seed=0)
    swapped = np.repeat([1, 0], 10)
    assert (model.predict(two_looks(10, rng)) != swapped).all()


def test_it_fits_on_a_stratified_sample_of_at_most_the_limit():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], [90, 30])
    images = np.concatenate([two_looks(90, rng)[:90], two_looks(30, rng)[30:]])
    model = fit_classical("knn", Split(images, labels, 2), limit=40, seed=3)
    assert model.train_images == 40
    fitted = model.estimator.classes_, np.bincount(model.estimator._y)
    assert fitted[0].tolist() == [0, 1] and fitted[1].tolist() == [30, 10]  # 3 to 1, as given


def test_grey_images_give_one_channel_and_colour_three():
    rng = np.random.default_rng(3)
    grey, colour = two_looks(5, rng), two_looks(5, rng, colour=True)
    everything = np.arange(10)
    assert is_grey(grey, everything) and not is_grey(colour, everything)
    assert classical.pixel_features(grey, grey=True).shape == (10, SIDE * SIDE)
    features = classical.pixel_features(colour, grey=False)
    assert features.shape == (10, SIDE * SIDE * 3)
    assert features.min() >= 0 and features.max() <= 1


def test_features_average_the_area_they_shrink():
    """A 48-pixel image of 2x2 checks averages to a flat grey at 24 pixels: area averaging,
    not sampling one pixel of each block (which would keep only black or only white)."""
    checks = (np.indices((48, 48)).sum(axis=0) % 2 * 255).astype(np.uint8)
    images = np.repeat(checks[None, ..., None], 3, axis=-1)
    features = classical.pixel_features(images, grey=True)
    assert features == pytest.approx(np.full((1, SIDE * SIDE), 0.5), abs=0.01)


def test_it_describes_what_it_was_and_how_many_images_it_saw():
    text = classical.describe("svc", 54_000)
    assert text == (
        "an RBF-kernel SVM (C 10) on 100 principal components of the pixels (24x24), "
        "fitted on 54,000 training images"
    )
