"""Holding out splits and storing them: stratified, seeded, memory-mapped."""

import numpy as np
import pytest

from src.finetune.data.prepared import (
    Rows,
    load_info,
    load_split,
    save_info,
    save_split,
    write_array,
)
from src.finetune.data.splits import (
    DataInfo,
    Split,
    at_most,
    check_every_class_in_every_split,
    split_validation,
    stratified_subset,
)
from src.finetune.errors import PipelineError
from workbench.archives import CLASS_NAMES


def labelled(n_per_class: int) -> Split:
    labels = np.repeat(np.arange(10), n_per_class)
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, 32, 32, 3), np.uint8
    )
    return Split(images, labels, 10)


def test_validation_split_is_stratified_disjoint_and_seeded():
    pool = labelled(20)
    train, val = split_validation(pool, 0.1, np.random.default_rng(7))
    assert np.bincount(val.labels).tolist() == [2] * 10
    assert np.bincount(train.labels).tolist() == [18] * 10
    assert not set(val.images[:, 0, 0, 0]) & set(train.images[:, 0, 0, 0])
    again, _ = split_validation(pool, 0.1, np.random.default_rng(7))
    other, _ = split_validation(pool, 0.1, np.random.default_rng(8))
    assert np.array_equal(train.images, again.images)
    assert not np.array_equal(train.images, other.images)


def test_a_split_left_without_a_class_names_the_class():
    _, val = split_validation(labelled(2), 0.1, np.random.default_rng(0))
    with pytest.raises(
        PipelineError, match=r"the val split would hold no image of class 'airplane'"
    ):
        check_every_class_in_every_split({"val": val}, CLASS_NAMES, "add images")
    check_every_class_in_every_split({"train": labelled(1)}, CLASS_NAMES, "add images")


def test_subset_keeps_class_proportions_and_at_most_means_at_most():
    pool = labelled(30)
    assert len(stratified_subset(pool, None, np.random.default_rng(0))) == 300
    subset = stratified_subset(pool, 100, np.random.default_rng(0))
    assert np.bincount(subset.labels).tolist() == [10] * 10
    for limit in (5, 15, 299):
        assert len(at_most(pool.labels, limit, np.random.default_rng(0))) == limit


def test_saved_splits_load_back_memory_mapped_without_pickle(tmp_path):
    split = labelled(3)
    save_split(tmp_path, "test", split.images, split.labels)
    save_info(tmp_path, DataInfo(CLASS_NAMES, "cifar10", (32, 32, 3)))
    loaded = load_split(tmp_path, "test")
    assert isinstance(loaded.images, np.memmap) and loaded.classes == 10
    assert np.array_equal(loaded.images, split.images)
    assert np.array_equal(loaded.labels, split.labels)
    assert load_info(tmp_path).class_names == CLASS_NAMES
    with pytest.raises(PipelineError, match=r"run `dvc repro prepare` first"):
        load_split(tmp_path / "absent", "train")


def test_rows_are_read_from_a_whole_mapped_split_and_never_from_a_part_of_one(tmp_path):
    """A slice of a memory map keeps the whole map's offset: positioned reads of a part would
    read the wrong images, so a part is read as an array."""
    split = labelled(2)
    save_split(tmp_path, "test", split.images, split.labels)
    save_info(tmp_path, DataInfo(CLASS_NAMES, "cifar10", (32, 32, 3)))
    loaded = load_split(tmp_path, "test").images
    assert np.array_equal(Rows.of(loaded).read(np.array([2, 3, 7])), split.images[[2, 3, 7]])
    assert Rows.of(loaded[5:]) is None and Rows.of(loaded[:5]) is None
    assert Rows.of(split.images) is None  # in memory


def test_rows_read_any_order_of_indices_as_numpy_indexes_and_refuse_a_cut_file(tmp_path):
    array = np.arange(40 * 6, dtype=np.float32).reshape(40, 2, 3)
    np.save(tmp_path / "a.npy", array)
    rows = Rows.of(np.load(tmp_path / "a.npy", mmap_mode="r"))
    for indices in ([], [7], [0, 1, 2, 39], [5, 4, 3], [3, 3, 4, 9, 10, 11, 0], range(40)):
        read = rows.read(np.array(indices, dtype=np.int64))
        assert read.shape == (len(indices), 2, 3)
        assert np.array_equal(read, array[list(indices)]), indices
    with (tmp_path / "a.npy").open("r+b") as handle:
        handle.truncate(rows.offset + 30 * rows.row_bytes)  # cut after 30 rows
    assert np.array_equal(rows.read(np.arange(25, 30)), array[25:30])
    with pytest.raises(PipelineError, match=r"a.npy: the file ends before row 32; .*dvc repro"):
        rows.read(np.arange(28, 32))


def test_arrays_are_written_a_chunk_at_a_time_in_the_order_asked(tmp_path, monkeypatch):
    monkeypatch.setattr("src.finetune.data.prepared.WRITE_CHUNK", 4)
    source = np.arange(30, dtype=np.int64)
    write_array(tmp_path / "a.npy", source, np.array([29, 3, 7, 0, 11, 12]))
    assert np.load(tmp_path / "a.npy").tolist() == [29, 3, 7, 0, 11, 12]


def test_damaged_prepared_data_is_one_line(tmp_path):
    split = labelled(1)
    save_split(tmp_path, "train", split.images, split.labels)
    (tmp_path / "classes.json").write_text("{")
    with pytest.raises(PipelineError, match=r"classes.json is damaged"):
        load_split(tmp_path, "train")
    save_info(tmp_path, DataInfo(CLASS_NAMES, "cifar10", (64, 64, 3)))
    with pytest.raises(PipelineError, match=r"expected \(64, 64, 3\) each"):
        load_split(tmp_path, "train")
    save_info(tmp_path, DataInfo(CLASS_NAMES, "cifar10", (32, 32, 3)))
    np.save(tmp_path / "train_labels.npy", split.labels.astype(np.float32).reshape(-1, 1))
    with pytest.raises(PipelineError, match=r"float32 labels of shape \(10, 1\)"):
        load_split(tmp_path, "train")
    np.save(tmp_path / "train_labels.npy", split.labels + 10)
    with pytest.raises(PipelineError, match=r"train_labels.npy: labels outside 0\.\.9"):
        load_split(tmp_path, "train")
