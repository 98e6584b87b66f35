"""The data checks on prepared splits: exact and near duplicates within and across splits,
and class balance, on images whose answers are known."""

import numpy as np

from src.finetune.data.checks import check_splits
from src.finetune.data.splits import Split

NAMES = ("cat", "dog")


def photos(count, seed):
    """Smooth random images (a photo's low frequencies, so pHash tells them apart)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 4, 4, 3)).astype(np.float32)
    return np.repeat(np.repeat(small, 8, axis=1), 8, axis=2).astype(np.uint8)


def splits(train, val, test):
    return {
        name: Split(images, np.arange(len(images)) % 2, 2)
        for name, images in (("train", train), ("val", val), ("test", test))
    }


def test_clean_splits_have_no_finding_and_no_warning():
    checks = check_splits(splits(photos(20, 0), photos(6, 1), photos(6, 2)), NAMES)
    assert checks.duplicates == [] and checks.warnings == []
    assert checks.images == {"train": 20, "val": 6, "test": 6}
    assert checks.per_class["train"] == {"cat": 10, "dog": 10}


def test_a_test_image_copied_from_training_is_a_leak_warning():
    train, test = photos(20, 0), photos(6, 2)
    test[3] = train[7]
    checks = check_splits(splits(train, photos(6, 1), test), NAMES)
    (finding,) = checks.duplicates
    assert (finding.kind, finding.a, finding.b, finding.pairs) == ("exact", "train", "test", 1)
    assert finding.examples == [("train #7", "test #3")]
    (warning,) = checks.warnings
    assert warning.startswith("1 identical image pair(s) between train and test (up to 16.7%")


def test_a_slightly_brightened_copy_is_a_near_duplicate_and_within_split_copies_count():
    train = photos(20, 0)
    train[5] = train[2]  # an exact copy within training
    test = photos(6, 2)
    test[0] = np.clip(train[9].astype(int) + 3, 0, 255).astype(np.uint8)  # brighter copy
    checks = check_splits(splits(train, photos(6, 1), test), NAMES)
    found = {(f.kind, f.a, f.b): f.examples for f in checks.duplicates}
    assert found[("exact", "train", "train")] == [("train #2", "train #5")]
    assert found[("near", "train", "test")] == [("train #9", "test #0")]
    assert ("near", "train", "train") not in found, "an exact pair is not counted again"


def test_imbalance_is_measured_and_warned():
    train = photos(44, 0)
    labels = np.array([0] * 42 + [1] * 2)
    data = splits(train, photos(6, 1), photos(6, 2))
    data["train"] = Split(train, labels, 2)
    checks = check_splits(data, NAMES)
    assert checks.imbalance_ratio == 21.0
    assert checks.warnings[0].startswith("the classes are imbalanced: cat has 42")
