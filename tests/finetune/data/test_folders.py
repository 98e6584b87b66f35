"""Your own images: a folder of class sub-folders becomes stratified splits on disk."""

import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from src.finetune.data import images
from src.finetune.data.folders import scan_folder
from src.finetune.data.prepared import load_files, load_info, load_split
from src.finetune.data.sources.folder import prepare_folder
from src.finetune.errors import PipelineError
from src.finetune.params import DataParams
from tests.support.images import deep_folder, hostile_files, image_folder, write_image


def data_params(**overrides) -> DataParams:
    values = {
        "source": "folder",
        "url": None,
        "archive": None,
        "sha256": None,
        "folder": "unused",
        "val_split": 0.2,
        "test_split": 0.25,
        "train_limit": None,
        "test_limit": None,
        "image_size": 32,
        "dedupe": False,
    }
    return DataParams(**(values | overrides))


def prepare(folder, out, **overrides):
    data = data_params(folder=folder.name, **overrides)
    return prepare_folder(data, folder.parent, np.random.default_rng(0), out)


def test_a_folder_of_mixed_images_becomes_stratified_splits(tmp_path):
    folder = image_folder(tmp_path / "photos", per_class=12)
    sizes = prepare(folder, tmp_path / "prepared")
    assert sizes == {"train_images": 21, "val_images": 6, "test_images": 9}
    info = load_info(tmp_path / "prepared")
    assert info.class_names == ("cat", "dog", "fox") and info.image_shape == (32, 32, 3)
    for name in ("train", "val", "test"):
        split = load_split(tmp_path / "prepared", name)
        assert isinstance(split.images, np.memmap) and split.images.dtype == np.uint8
        assert np.bincount(split.labels, minlength=3).min() >= 2
    assert not list((tmp_path / "prepared").glob(".*pool*")), "the pools are removed"


def test_given_train_and_test_folders_are_the_splits(tmp_path):
    image_folder(tmp_path / "photos/train", per_class=5)
    image_folder(tmp_path / "photos/test", per_class=2)
    sizes = prepare(tmp_path / "photos", tmp_path / "prepared")
    assert sizes == {"train_images": 12, "val_images": 3, "test_images": 6}
    files = load_files(tmp_path / "prepared")
    assert all(path.startswith("photos/test/") for path in files["test"])
    assert not any(path.startswith("photos/test/") for path in files["train"] + files["val"])


def test_the_same_folder_and_seed_give_the_same_splits(tmp_path):
    folder = image_folder(tmp_path / "photos", per_class=8)
    prepare(folder, tmp_path / "a")
    prepare(folder, tmp_path / "b")
    for name in ("train", "val", "test"):
        first, second = load_split(tmp_path / "a", name), load_split(tmp_path / "b", name)
        assert np.array_equal(first.images, second.images)
        assert np.array_equal(first.labels, second.labels)
    assert load_files(tmp_path / "a") == load_files(tmp_path / "b")


def test_what_is_not_a_readable_image_is_ignored_or_skipped_and_named(tmp_path, caplog):
    folder = image_folder(tmp_path / "photos", per_class=6)
    (folder / "cat/.DS_Store").write_bytes(b"\0\0")
    (folder / "dog/notes.txt").write_text("taken in May")
    (folder / "fox/broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    outside = write_image(tmp_path / "secret.png", "RGB", (8, 8), 10)
    (folder / "cat/link.png").symlink_to(outside)
    (folder / "dog/loop.png").symlink_to(folder / "dog/loop.png")
    caplog.set_level(logging.WARNING)
    sizes = prepare(folder, tmp_path / "prepared", val_split=0.25, test_split=0.25)
    assert sum(sizes.values()) == 18
    text = caplog.text
    assert "skipped 1 file(s) that are not readable images: fox/broken.jpg" in text
    assert "skipped 2 link(s) pointing outside" in text and "cat/link.png" in text
    assert "dog/loop.png" in text
    assert "ignored 2 file(s) that are not images" in text and "dog/notes.txt" in text


def test_damaged_files_of_every_format_are_skipped_and_the_others_kept(tmp_path, caplog):
    folder = image_folder(tmp_path / "photos", per_class=6)
    hostile = hostile_files(folder / "dog", per_format=3)
    caplog.set_level(logging.WARNING)
    sizes = prepare(folder, tmp_path / "prepared", val_split=0.25, test_split=0.25)
    skipped = re.search(r"skipped (\d+) file\(s\) that are not readable images", caplog.text)
    assert skipped, caplog.text
    assert sum(sizes.values()) == 18 + len(hostile) - int(skipped.group(1)), "none lost"
    assert int(skipped.group(1)) > len(hostile) / 4


def test_a_class_folder_nested_too_deep_is_one_line(tmp_path):
    folder = image_folder(tmp_path / "photos", per_class=6)
    with deep_folder(folder / "fox/deep", 3000), pytest.raises(PipelineError) as raised:
        prepare(folder, tmp_path / "prepared")
    assert "nested more than 64 deep" in str(raised.value)


def test_a_decompression_bomb_is_skipped_and_named(tmp_path, caplog, monkeypatch):
    folder = image_folder(tmp_path / "photos", per_class=6)
    Image.new("L", (300, 300)).save(folder / "dog/huge.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    caplog.set_level(logging.WARNING)
    prepare(folder, tmp_path / "prepared")
    assert "dog/huge.png: 300x300 pixels, over the 50,000 allowed" in caplog.text


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"cat": 4, "dog": 0}, r"photos/dog holds no images"),
        ({"cat": 4}, r"needs at least two class sub-folders .* \(found only 'cat'\)"),
        ({}, r"needs at least two class sub-folders .* \(found none\)"),
        ({"cat": 6, "dog": 1}, r"split would hold no image of class 'dog'"),
    ],
    ids=["empty-class", "one-class", "no-class", "too-few-for-every-split"],
)
def test_a_folder_that_cannot_train_stops_with_one_line(tmp_path, layout, expected):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, count in layout.items():
        (folder / name).mkdir()
        for i in range(count):
            write_image(folder / name / f"{i}.png", "RGB", (10, 10), 100)
    with pytest.raises(PipelineError, match=expected) as caught:
        prepare(folder, tmp_path / "prepared")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "prepared/train_images.npy").exists()


@pytest.mark.parametrize("test_split", [0.97, 0.99])
def test_a_test_split_that_leaves_no_training_image_is_one_line(tmp_path, test_split):
    """15 images a class: 0.97 leaves one training image of each, 0.99 none at all."""
    folder = image_folder(tmp_path / "photos", per_class=15)
    with pytest.raises(PipelineError, match="split would hold no image of class") as caught:
        prepare(folder, tmp_path / "prepared", test_split=test_split)
    assert "\n" not in str(caught.value)


def test_a_class_folder_linked_from_outside_is_one_line(tmp_path):
    folder = image_folder(tmp_path / "photos", per_class=6)
    elsewhere = image_folder(tmp_path / "elsewhere", per_class=6)
    (folder / "owl").symlink_to(elsewhere / "cat")
    with pytest.raises(PipelineError, match=r"photos/owl is a link pointing outside"):
        prepare(folder, tmp_path / "prepared")


def test_a_class_folder_name_that_is_not_utf8_is_one_line(tmp_path):
    folder = image_folder(tmp_path / "photos", per_class=6)
    os.rename(folder / "dog", os.fsencode(folder) + b"/d\xffg")
    with pytest.raises(PipelineError, match=r"class folder name 'd\\udcffg' is not printable"):
        prepare(folder, tmp_path / "prepared")


def test_a_missing_folder_names_the_key(tmp_path):
    with pytest.raises(PipelineError, match=r"data.folder: .*absent is not a folder"):
        scan_folder(tmp_path / "absent")


def split_layout(root, train=("cat", "dog"), test=("cat", "dog"), extra=()):
    """photos/train/<class>/ and photos/test/<class>/, plus ``extra`` folders of images."""
    for split, classes in (("train", train), ("test", test)):
        image_folder(root / split, per_class=4, classes=tuple(classes))
    for name in extra:
        image_folder(root / name, per_class=2, classes=("cat", "dog"))
    return root


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"extra": ("val",)}, r"photos/val is a validation folder, which this pipeline does "
                              r"not read: .*move its images into train/"),
        ({"extra": ("valid",)}, r"photos/valid is a validation folder"),
        ({"extra": ("extra",)}, r"holds train/ and test/, so its other folders \(extra\) "
                                r"would be ignored"),
        ({"test": ("cat", "dog", "fox")}, r"photos/test: the class\(es\) fox have no training "
                                          r"images; add .*photos/train/<class>/"),
        ({"train": ("cat", "dog", "fox")}, r"photos/train: the class\(es\) fox have no test "
                                           r"images"),
    ],
    ids=["val-folder", "valid-folder", "other-folder", "class-only-in-test", "only-in-train"],
)  # fmt: skip
def test_a_split_layout_that_would_lose_images_is_one_line(tmp_path, layout, expected):
    folder = split_layout(tmp_path / "photos", **layout)
    with pytest.raises(PipelineError, match=expected) as caught:
        prepare(folder, tmp_path / "prepared")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "prepared").exists()


def test_a_class_folder_linking_to_another_class_is_one_line(tmp_path):
    folder = image_folder(tmp_path / "photos", per_class=6)
    (folder / "kitten").symlink_to(folder / "cat")
    with pytest.raises(
        PipelineError, match=r"photos/kitten and .*photos/cat are the same folder .*remove the link"
    ):
        prepare(folder, tmp_path / "prepared")


def test_imbalance_is_a_warning_above_ten_to_one():
    from src.finetune.data.splits import imbalance

    names = ("big", "small")
    assert imbalance(np.array([0] * 100 + [1] * 10), names) is None
    warning = imbalance(np.array([0] * 1000 + [1] * 10), names)
    assert warning.startswith("the classes are imbalanced: big has 1000 training images, small 10")
