"""Class names inside a .keras archive and beside an export; a checkpoint whose names differ
from the prepared data's is refused."""

import json
import zipfile

import keras
import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.model import labels
from src.finetune.model.backbones import BACKBONES
from src.finetune.model.checkpoints import check_checkpoint, load_checkpoint, write_checkpoint
from src.finetune.model.network import build_model
from tests.support.bombs import peak_memory, write_zip_bomb

NAMES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = build_model(BACKBONES["tinynet"], None, 0.2, 32, (32, 32, 3), 3)
    path = tmp_path_factory.mktemp("checkpoint") / "phase2.keras"
    write_checkpoint(model, path, NAMES)
    return model, path


def test_the_archive_holds_the_names_and_still_loads_exactly(checkpoint):
    model, path = checkpoint
    assert labels.read_from_archive(path) == NAMES
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("labels.json")) == {"class_names": list(NAMES)}
    loaded = keras.saving.load_model(path)  # plain Keras, nothing of this project's reader
    for ours, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_checkpoint_for_other_classes_is_refused(checkpoint):
    model, path = checkpoint
    check_checkpoint(model, path, "tinynet", (32, 32, 3), NAMES)
    other = ("ant", "bee", "fly")
    with pytest.raises(PipelineError, match="was trained on the classes cat, dog, fox, not on "
                       "the classes ant, bee, fly prepared here"):  # fmt: skip
        check_checkpoint(model, path, "tinynet", (32, 32, 3), other)


def test_a_checkpoint_without_names_is_refused(checkpoint, tmp_path):
    model, _ = checkpoint
    old = tmp_path / "old.keras"
    model.save(old)
    loaded = load_checkpoint(old, made_by="phase1_extract")
    with pytest.raises(PipelineError, match="holds no class names"):
        check_checkpoint(loaded, old, "tinynet", (32, 32, 3), NAMES)


def test_sidecars_sit_beside_a_file_and_inside_a_folder(tmp_path):
    (tmp_path / "saved_model").mkdir()
    for path in (tmp_path / "model_int8.tflite", tmp_path / "saved_model"):
        labels.write_sidecar(path, NAMES)
        assert labels.read_sidecar(path) == NAMES
    assert (tmp_path / "model_int8.labels.json").is_file()
    assert (tmp_path / "saved_model/labels.json").is_file()
    assert labels.read_sidecar(tmp_path / "model.tflite") is None


@pytest.mark.parametrize(
    "text",
    ['{"class_names": []}', '{"names": ["a"]}', '["a", 3]', "not json", '{"class_names": "a"}'],
)
def test_unreadable_names_are_one_line(text):
    with pytest.raises(PipelineError, match=r"^where"):
        labels.decode(text, "where")


def test_names_that_inflate_far_are_refused_before_they_are_read(tmp_path):
    bomb = write_zip_bomb(tmp_path / "model.keras", labels.ENTRY, 300_000_000)
    with peak_memory() as peak, pytest.raises(PipelineError) as refused:
        labels.read_from_archive(bomb)
    assert peak.bytes < 200_000_000, f"{peak.bytes / 1e6:.0f} MB taken to refuse it"
    assert str(refused.value) == (
        f"{bomb}: labels.json inflates to 300 MB, more than the 16 MB it may hold; it was not "
        "read: run `dvc repro --force` to rebuild it"
    )


BAD_NAMES = {
    "empty": ["cat", ""],
    "twice": ["cat", "dog", "cat"],
    "long": ["cat", "x" * 101],
    "control": ["cat", "d\nog"],
}


@pytest.mark.parametrize("names", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_names_that_name_nothing_are_refused_on_write(names, tmp_path):
    with pytest.raises(
        PipelineError, match=r"^the class names to write: the class name"
    ) as refused:
        labels.write_sidecar(tmp_path / "model.tflite", tuple(names))
    assert "\n" not in str(refused.value)
    assert not labels.sidecar(tmp_path / "model.tflite").exists()


@pytest.mark.parametrize("names", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_names_that_name_nothing_are_refused_on_read(names, tmp_path):
    path = tmp_path / "model.tflite"
    labels.sidecar(path).write_text(json.dumps({labels.METADATA_KEY: names}))
    with pytest.raises(PipelineError, match=r"model\.labels\.json: the class name") as refused:
        labels.read_sidecar(path)
    assert "\n" not in str(refused.value)


def test_a_hundred_printable_characters_still_name_a_class():
    names = ("x" * 100, "chat noir", "Ω")
    assert labels.decode(labels.encode(names), "where") == names
