"""Images and labels, and how they are held out: stratified, seeded, exact in size.

TensorFlow is not imported here: the prepare stage stays quick to start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.finetune.errors import PipelineError


@dataclass(frozen=True)
class Split:
    """Images as uint8 NHWC (maybe memory-mapped: read a batch at a time), labels as class
    indices into ``classes`` classes."""

    images: np.ndarray
    labels: np.ndarray
    classes: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self) -> np.ndarray:
        """What the model reads: the images (``training.batches.Cached`` holds features)."""
        return self.images

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices], self.classes)


@dataclass(frozen=True)
class DataInfo:
    """What ``classes.json`` says: the class names, where the images came from, their size."""

    class_names: tuple[str, ...]
    source: str
    image_shape: tuple[int, int, int]

    @property
    def classes(self) -> int:
        return len(self.class_names)


# --- holding out ----------------------------------------------------------------------------


def stratified_subset(split: Split, limit: int | None, rng: np.random.Generator) -> Split:
    """At most ``limit`` images, keeping the class proportions."""
    return split.take(at_most(split.labels, limit, rng))


def split_validation(
    split: Split, fraction: float, rng: np.random.Generator
) -> tuple[Split, Split]:
    """Hold out ``fraction`` of each class for validation; returns (train, val)."""
    val, train = stratified_indices(split.labels, fraction, rng)
    return split.take(train), split.take(val)


def stratified_indices(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled indices of each class, cut at ``fraction``: (selected, rest), both sorted.
    No labels (every image held out before): two empty arrays, for the class check to name."""
    selected, rest = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = round(fraction * len(members))
        selected.append(members[:cut])
        rest.append(members[cut:])
    return np.sort(np.concatenate(selected)), np.sort(np.concatenate(rest))


def at_most(labels: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of exactly ``min(limit, len(labels))`` labels, each class's share in
    proportion (largest remainders get the places rounding leaves)."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * limit / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[: limit - quota.sum()]] += 1
    keep = [
        rng.permutation(np.flatnonzero(labels == cls))[:count]
        for cls, count in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(keep))


CLASS_HINT = (
    "add images of that class, or lower data.val_split / data.test_split or raise the limits"
)


def check_every_class_in_every_split(
    splits: dict[str, Split], class_names: tuple[str, ...], hint: str = CLASS_HINT
) -> None:
    """Stop, naming the class, if a split would train, validate or test without it."""
    for name, split in splits.items():
        counts = np.bincount(split.labels, minlength=len(class_names))
        empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise PipelineError(
                f"the {name} split would hold no image of class {empty[0]!r}"
                + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else "")
                + f"; {hint}"
            )


# --- checks -----------------------------------------------------------------------------------

IMBALANCE_RATIO = 10  # largest class over smallest, in training images, before a warning


def imbalance(labels: np.ndarray, class_names: tuple[str, ...]) -> str | None:
    """A warning when the largest class has more than ``IMBALANCE_RATIO`` times the training
    images of the smallest: headline accuracy then hides how the small class fares."""
    counts = np.bincount(labels, minlength=len(class_names))
    large, small = int(counts.argmax()), int(counts.argmin())
    if counts[small] * IMBALANCE_RATIO >= counts[large]:
        return None
    return (
        f"the classes are imbalanced: {class_names[large]} has {counts[large]} training "
        f"images, {class_names[small]} {counts[small]} (more than {IMBALANCE_RATIO} to 1); "
        "headline accuracy will hide the small classes: read the per-class recall in the "
        "report, and add images of the small classes if you can"
    )
