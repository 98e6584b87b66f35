"""The classical reference: a scikit-learn model fitted on the training split's pixels and
scored on the test split beside the two checkpoints, so a report says whether the network is
worth its compute. On scikit-learn's digits an SVM on raw pixels is right 99% of the time in
under a second; a fine-tuned network that does worse has bought nothing.

It sees what the network sees, and no more: the training split (never validation or test),
its images downscaled to ``SIDE`` pixels a side by area averaging (grey when every channel is
equal, as for scanned digits and Fashion-MNIST), pixels 0-1. At most ``evaluate.
classical_images`` of them, a stratified sample drawn with the pipeline's seed, so its cost
stays bounded on any folder. The model and its input were chosen on validation accuracy on
the digits, Fashion-MNIST and a folder of colour photos (docs/quality.md): principal
components then an RBF-kernel SVM was the strongest for its cost on all three.

TensorFlow-free: scikit-learn, NumPy and Pillow only. scikit-learn is imported by the builders,
not here: the report imports this module for ``describe`` and need not pay its 1.5 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from src.finetune.data.splits import Split, at_most

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin
    from sklearn.pipeline import Pipeline

SIDE = 24  # pixels a side the images are downscaled to (chosen on validation)
COMPONENTS = 100  # principal components the SVM works on
BATCH = 2048  # images read and downscaled at a time: memory stays bounded


@dataclass(frozen=True)
class Kind:
    """One classical model ``evaluate.classical`` may name."""

    title: str  # how the report names it, up to "the pixels"
    build: Callable[[tuple[int, int]], Pipeline | ClassifierMixin]  # from (images, features)


def _svc(shape: tuple[int, int]) -> Pipeline:
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    components = min(COMPONENTS, *shape)  # PCA finds no more than either dimension
    return make_pipeline(PCA(components, random_state=0), SVC(C=10.0, gamma="scale"))


def _logistic(_: tuple[int, int]) -> ClassifierMixin:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500, random_state=0)


def _knn(_: tuple[int, int]) -> ClassifierMixin:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(5)


KINDS = {
    "svc": Kind(f"an RBF-kernel SVM (C 10) on {COMPONENTS} principal components of", _svc),
    "logistic": Kind("logistic regression on", _logistic),
    "knn": Kind("5 nearest neighbours on", _knn),
}


@dataclass(frozen=True)
class ClassicalModel:
    """A fitted classical model and what it saw."""

    kind: str
    estimator: Pipeline | ClassifierMixin
    grey: bool
    train_images: int

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class indices for uint8 NHWC images, a batch at a time."""
        return np.concatenate(
            [
                self.estimator.predict(pixel_features(images[start : start + BATCH], self.grey))
                for start in range(0, len(images), BATCH)
            ]
        ).astype(np.int64)

    def describe(self) -> str:
        """What the log says of it: ``describe``, and whether it read grey pixels."""
        colour = "grey" if self.grey else "RGB"
        return f"{describe(self.kind, self.train_images)} ({colour})"


def describe(kind: str, train_images: int) -> str:
    """``an RBF-kernel SVM (C 10) on 100 principal components of the pixels (24x24),
    fitted on 1,295 training images``: for the log, the report and the model card."""
    return (
        f"{KINDS[kind].title} the pixels ({SIDE}x{SIDE}), fitted on {train_images:,} "
        "training images"
    )


def fit_classical(kind: str, train: Split, limit: int, seed: int) -> ClassicalModel:
    """Fit ``kind`` on at most ``limit`` training images (stratified, seeded)."""
    chosen = at_most(train.labels, limit, np.random.default_rng(seed))
    grey = is_grey(train.images, chosen)
    features = np.concatenate(
        [
            pixel_features(train.images[chosen[start : start + BATCH]], grey)
            for start in range(0, len(chosen), BATCH)
        ]
    )
    estimator = KINDS[kind].build(features.shape)
    estimator.fit(features, train.labels[chosen])
    return ClassicalModel(kind, estimator, grey, len(chosen))


def is_grey(images: np.ndarray, indices: np.ndarray) -> bool:
    """Whether every channel of every chosen image is the same: scans and greyscale photos
    stored as RGB, whose three copies would only triple the features."""
    if images.shape[-1] == 1:
        return True
    for start in range(0, len(indices), BATCH):
        batch = np.asarray(images[indices[start : start + BATCH]])
        if not (
            np.array_equal(batch[..., 0], batch[..., 1])
            and np.array_equal(batch[..., 0], batch[..., 2])
        ):
            return False
    return True


def pixel_features(images: np.ndarray, grey: bool) -> np.ndarray:
    """Each image downscaled to SIDE x SIDE by area averaging (Pillow's box filter), its
    pixels 0-1 in a row."""
    channels = 1 if grey else images.shape[-1]
    out = np.empty((len(images), SIDE * SIDE * channels), np.float32)
    for row, pixels in enumerate(np.asarray(images)):
        image = Image.fromarray(pixels[..., 0] if grey else pixels)
        small = image.resize((SIDE, SIDE), Image.Resampling.BOX)
        out[row] = np.asarray(small, np.float32).reshape(-1) / 255.0
    return out
