"""The data checks on prepared splits: exact and near duplicates within and across splits,
and class balance, on images whose answers are known."""

import time

import numpy as np

from src.finetune.data.checks import check_splits
from src.finetune.data.splits import Split
from tests.support.bombs import peak_memory

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
    assert warning.startswith("1 test image(s) (16.7% of its 6) are identical copies of train")


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


def flat(colours) -> np.ndarray:
    """32x32 images of one flat colour each."""
    return np.broadcast_to(
        np.asarray(colours, np.uint8)[:, None, None, :], (len(colours), 32, 32, 3)
    ).copy()


def test_flat_images_of_different_colours_are_not_duplicates():
    """Their brightness hashes are equal; their colours are not."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (90, 90, 90)]
    checks = check_splits(splits(flat(colours[:3]), flat(colours[3:4]), flat(colours[4:])),
                          NAMES)  # fmt: skip
    assert checks.duplicates == [] and checks.warnings == []


def test_copies_are_grouped_each_paired_with_the_first():
    """Four slightly brightened copies of one image in training and two in test: three pairs
    within training and two into test, each with the first copy, not the six and eight pairs
    of every two."""
    train, test = photos(20, 0), photos(6, 2)
    original = train[1].astype(int)
    for brighter, index in enumerate((4, 9, 13), start=1):
        train[index] = np.clip(original + brighter, 0, 255)
    test[2], test[5] = np.clip(original + 4, 0, 255), np.clip(original + 5, 0, 255)
    found = {(f.kind, f.a, f.b): f for f in check_splits(splits(train, photos(6, 1), test),
                                                        NAMES).duplicates}  # fmt: skip
    assert found[("near", "train", "train")].examples == [
        ("train #1", "train #4"), ("train #1", "train #9"), ("train #1", "train #13"),
    ]  # fmt: skip
    assert found[("near", "train", "test")].examples == [("train #1", "test #2"),
                                                         ("train #1", "test #5")]  # fmt: skip


def test_thousands_of_alike_images_are_one_group_in_bounded_time_and_memory():
    """8,000 images of one flat grey, each with two pixels of its own: every hash the same,
    every image a near duplicate of every other. Grouped: each paired once, not 32 million
    pairs."""
    images = flat([(120, 120, 120)] * 8000)
    index = np.arange(8000)
    images[index, index // 32 % 32, index % 32, 0] = 121  # a pair of pixels of its own
    images[index, 31, index // 1024, 1] = 121
    data = splits(images, flat([(10, 200, 10), (10, 10, 200)]), flat([(200, 10, 10), (0, 0, 0)]))
    started = time.monotonic()
    with peak_memory() as peak:
        (finding,) = check_splits(data, NAMES).duplicates
    assert (finding.kind, finding.a, finding.b) == ("near", "train", "train")
    assert 7900 <= finding.pairs <= 7999  # a flat image's pHash flips a bit or two on a pixel
    assert finding.examples[0] == ("train #0", "train #1")
    assert peak.bytes < 300_000_000, f"{peak.bytes / 1e6:.0f} MB"
    assert time.monotonic() - started < 60


def test_memory_mapped_splits_give_the_same_findings_as_arrays(tmp_path):
    """`prepare` checks the splits as saved (memory-mapped, read with positioned reads)."""
    from src.finetune.data.prepared import load_split, save_info, save_split
    from src.finetune.data.splits import DataInfo

    save_info(tmp_path, DataInfo(NAMES, "folder", (32, 32, 3)))
    train, test = photos(30, 0), photos(8, 2)
    train[7], test[3] = train[2], np.clip(train[5].astype(int) + 3, 0, 255)
    data = splits(train, photos(8, 1), test)
    for name, split in data.items():
        save_split(tmp_path, name, split.images, split.labels)
    mapped = {name: load_split(tmp_path, name) for name in data}
    assert isinstance(mapped["train"].images, np.memmap)
    in_memory, from_disk = check_splits(data, NAMES), check_splits(mapped, NAMES)
    assert {(f.kind, f.a, f.b, f.pairs) for f in from_disk.duplicates} == {
        ("exact", "train", "train", 1), ("near", "train", "test", 1),
    }  # fmt: skip
    assert from_disk == in_memory
