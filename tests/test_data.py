import io
import pickle
import tarfile
import time

import numpy as np
import pytest

from src.finetune import data
from src.finetune.data import (
    Split,
    ensure_archive,
    load_class_names,
    load_split,
    read_archive,
    save_splits,
    split_validation,
    stratified_subset,
)
from src.finetune.errors import PipelineError
from src.finetune.sample import CLASS_NAMES, write_archive
from tests.helpers import TINY_TEST, TINY_TRAIN


def write_members(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def official_members(batch: dict) -> dict[str, bytes]:
    meta = pickle.dumps({b"label_names": [n.encode() for n in CLASS_NAMES]}, protocol=2)
    payload = pickle.dumps(batch, protocol=2)
    members = {name: payload for name in data.TRAIN_BATCHES}
    return members | {data.TEST_BATCH: payload, data.META: meta}


def test_reads_every_batch_of_a_small_archive(sample_archive):
    cifar = read_archive(sample_archive[0])
    assert cifar.train.images.shape == (TINY_TRAIN, 32, 32, 3)
    assert cifar.test.images.shape == (TINY_TEST, 32, 32, 3)
    assert cifar.train.images.dtype == np.uint8 and cifar.train.labels.dtype == np.int64
    assert np.bincount(cifar.train.labels).tolist() == [TINY_TRAIN // 10] * 10
    assert cifar.class_names == CLASS_NAMES


def test_channels_first_rows_become_height_width_channel_images(tmp_path):
    red_only = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    red_only[:, 0] = 255
    red_only[1, 2, 5, 7] = 9  # blue channel, row 5, column 7
    batch = {b"data": red_only.reshape(2, -1), b"labels": [3, 4]}
    archive = tmp_path / "a.tar.gz"
    write_members(archive, official_members(batch))
    images = read_archive(archive).test.images
    assert (images[..., 0] == 255).all() and images[0, ..., 1:].max() == 0
    assert images[1, 5, 7, 2] == 9


def test_wrong_layout_names_the_missing_members(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_members(archive, {"cifar-10-batches-py/data_batch_1": b"x"})
    with pytest.raises(PipelineError, match="missing cifar-10-batches-py/data_batch_2"):
        read_archive(archive)


def test_truncated_archive_is_reported(sample_archive, tmp_path):
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(sample_archive[0].read_bytes()[:5000])
    with pytest.raises(PipelineError, match=r"truncated or not a \.tar\.gz"):
        read_archive(truncated)


def test_pickles_that_would_run_code_are_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    archive = tmp_path / "a.tar.gz"
    members = official_members({b"data": Exploit(), b"labels": []})
    write_members(archive, members)
    with pytest.raises(PipelineError, match=r"refusing to load (__builtin__|builtins)\.print"):
        read_archive(archive)


def test_batch_with_wrong_shape_is_reported(tmp_path):
    archive = tmp_path / "a.tar.gz"
    write_members(
        archive, official_members({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(PipelineError, match=r"expected data of shape \(N, 3072\)"):
        read_archive(archive)


def test_existing_archive_with_the_right_checksum_is_used_without_network(sample_archive):
    path, sha = sample_archive
    ensure_archive(path, "http://127.0.0.1:9/unreachable", sha)


def test_checksum_mismatch_stops_and_keeps_the_file_untouched(sample_archive, tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(sample_archive[0].read_bytes())
    with pytest.raises(
        PipelineError, match=r"expected 0{64} \(data\.sha256\); the file was not used"
    ):
        ensure_archive(path, "http://127.0.0.1:9/x", "0" * 64)
    assert path.read_bytes() == sample_archive[0].read_bytes()


def test_missing_archive_is_downloaded_and_verified(sample_archive, tmp_path):
    source, sha = sample_archive
    target = tmp_path / "raw" / "cifar.tar.gz"
    ensure_archive(target, source.as_uri(), sha)
    assert target.read_bytes() == source.read_bytes()


def test_download_with_the_wrong_checksum_is_discarded(sample_archive, tmp_path):
    target = tmp_path / "cifar.tar.gz"
    with pytest.raises(PipelineError, match="it was discarded"):
        ensure_archive(target, sample_archive[0].as_uri(), "f" * 64)
    assert list(tmp_path.iterdir()) == []


def test_offline_fails_fast_saying_which_file_to_put_where(tmp_path):
    target = tmp_path / "raw" / "cifar.tar.gz"
    started = time.monotonic()
    with pytest.raises(PipelineError) as caught:
        ensure_archive(target, "http://127.0.0.1:9/cifar-10-python.tar.gz", "a" * 64)
    assert time.monotonic() - started < 10
    assert f"put the CIFAR-10 python archive at {target} (sha256 {'a' * 64})" in str(caught.value)
    assert not target.exists()


def labelled(n_per_class: int) -> Split:
    labels = np.repeat(np.arange(10), n_per_class)
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, 32, 32, 3), np.uint8
    )
    return Split(images, labels)


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


def test_empty_validation_split_is_an_error():
    with pytest.raises(PipelineError, match="leaves an empty split"):
        split_validation(labelled(2), 0.1, np.random.default_rng(0))


def test_subset_keeps_class_proportions_and_none_keeps_all():
    pool = labelled(30)
    assert len(stratified_subset(pool, None, np.random.default_rng(0))) == 300
    subset = stratified_subset(pool, 100, np.random.default_rng(0))
    assert np.bincount(subset.labels).tolist() == [10] * 10


def test_saved_splits_load_back_without_pickle(tmp_path):
    split = labelled(1)
    save_splits(tmp_path, {"train": split, "val": split, "test": split}, CLASS_NAMES)
    loaded = load_split(tmp_path, "test")
    assert np.array_equal(loaded.images, split.images) and np.array_equal(
        loaded.labels, split.labels
    )
    assert load_class_names(tmp_path) == CLASS_NAMES
    with pytest.raises(PipelineError, match="run `dvc repro prepare` first"):
        load_split(tmp_path / "absent", "train")


def test_sample_archive_is_deterministic(tmp_path):
    first = write_archive(tmp_path / "a.tar.gz", 50, 20, seed=3)
    second = write_archive(tmp_path / "b.tar.gz", 50, 20, seed=3)
    assert first == second
    assert write_archive(tmp_path / "c.tar.gz", 50, 20, seed=4) != first
