"""`python -m src.predict`: CSV of class names and probabilities for files and folders."""

import csv
import io
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from src import predict
from src.finetune.data.prepared import load_info, load_split
from src.finetune.entrypoint import run_stage
from tests.support.images import hostile_files, image_folder


def run_predict(pipeline, capsys, *args):
    capsys.readouterr()
    code = 0
    try:
        predict.main(
            ["--model", str(pipeline / "models/phase2.keras"), *map(str, args)]
        )  # fmt: skip
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, list(csv.DictReader(io.StringIO(out))), err, out


def test_files_and_folders_get_a_row_each_labelled_by_class_name(pipeline, tmp_path, capsys):
    folder = image_folder(tmp_path / "photos", per_class=2)
    (folder / "cat/notes.txt").write_text("not an image")
    code, rows, err, _ = run_predict(pipeline, capsys, folder, folder / "dog/000.png")
    assert code == 0 and err == ""
    assert len(rows) == 7 and list(rows[0]) == ["path", "label", "probability"]
    names = set(load_info(pipeline / "data/prepared").class_names)
    assert {row["label"] for row in rows} <= names
    assert all(0 <= float(row["probability"]) <= 1 for row in rows)


def test_top_k_rows_per_image_most_likely_first(pipeline, tmp_path, capsys):
    folder = image_folder(tmp_path / "photos", per_class=1)
    _, rows, _, _ = run_predict(pipeline, capsys, "--top-k", "3", folder)
    assert len(rows) == 9
    for first in range(0, 9, 3):
        chunk = rows[first : first + 3]
        assert len({row["path"] for row in chunk}) == 1
        probabilities = [float(row["probability"]) for row in chunk]
        assert probabilities == sorted(probabilities, reverse=True)


def test_an_unreadable_file_gets_a_line_and_the_others_are_predicted(pipeline, tmp_path, capsys):
    folder = image_folder(tmp_path / "photos", per_class=1)
    (folder / "cat/broken.jpg").write_bytes(b"\xff\xd8 not really")
    code, rows, err, _ = run_predict(pipeline, capsys, folder, tmp_path / "absent.png")
    assert code == 1 and len(rows) == 3
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: predict: ") for line in lines)
    assert "broken.jpg" in lines[0] and "absent.png" in lines[1]


def test_damaged_files_pipes_and_dashed_names_each_get_a_row_or_a_line(
    pipeline, tmp_path, capsys, monkeypatch
):
    folder = tmp_path / "photos"
    hostile = hostile_files(folder / "damaged", per_format=2)
    os.mkfifo(folder / "pipe.png")
    monkeypatch.chdir(folder)
    Image.new("RGB", (9, 9), "red").save("-x.png")  # argparse would take it for an option
    code, rows, err, _ = run_predict(pipeline, capsys, "-x.png", "damaged", "pipe.png")
    lines = err.strip().splitlines()
    assert code == 1 and all(line.startswith("error: predict: ") for line in lines)
    assert any("pipe.png: not a regular file" in line for line in lines)
    assert sum(row["path"] == "-x.png" for row in rows) == 1
    assert len(rows) + len(lines) == 1 + len(hostile) + 1, "each file once"


def test_a_file_gets_the_pixels_training_used(pipeline, tmp_path, capsys):
    test = load_split(pipeline / "data/prepared", "test")
    Image.fromarray(np.asarray(test.images[0])).save(tmp_path / "first.png")
    _, rows, _, _ = run_predict(pipeline, capsys, tmp_path / "first.png")
    model = keras.saving.load_model(pipeline / "models/phase2.keras")
    expected = model.predict(np.asarray(test.images[:1], "float32"), verbose=0)[0]
    names = load_info(pipeline / "data/prepared").class_names
    assert rows[0]["label"] == names[expected.argmax()]
    assert float(rows[0]["probability"]) == pytest.approx(expected.max(), abs=1e-6)


def test_request_prints_the_body_mlflow_serving_answers(pipeline, tmp_path, capsys):
    folder = image_folder(tmp_path / "photos", per_class=1)
    _, _, _, out = run_predict(pipeline, capsys, "--request", folder / "cat")
    body = json.loads(out)
    assert np.asarray(body["inputs"]).shape == (1, 32, 32, 3)


def run_predict_with(model_path, capsys, *args):
    capsys.readouterr()
    code = 0
    try:
        run_stage(predict.NAME, lambda: predict.main(["--model", str(model_path), *map(str, args)]))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, list(csv.DictReader(io.StringIO(out))), err


@pytest.mark.parametrize("export", ["model.onnx", "model_int8.tflite"])
def test_an_export_predicts_the_same_csv_with_its_own_labels(pipeline, tmp_path, capsys, export):
    folder = image_folder(tmp_path / "photos", per_class=2)
    _, keras_rows, _, _ = run_predict(pipeline, capsys, folder)
    code, rows, err = run_predict_with(pipeline / "models/export" / export, capsys, folder)
    assert code == 0 and err == ""
    assert len(rows) == len(keras_rows) == 6
    assert [r["path"] for r in rows] == [r["path"] for r in keras_rows]
    if export.endswith(".onnx"):  # float: the same answers (int8's differ on this untrained
        # tiny model, whose probabilities are all close; tests/finetune/export measures it)
        assert [r["label"] for r in rows] == [k["label"] for k in keras_rows]
    names = set(load_info(pipeline / "data/prepared").class_names)
    assert {r["label"] for r in rows} <= names


def test_labels_come_from_the_model_not_from_the_prepared_data(pipeline, tmp_path, capsys):
    """Another project's classes.json beside it changes nothing: the names are the model's."""
    folder = image_folder(tmp_path / "photos", per_class=1)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes((pipeline / "models/export/model.onnx").read_bytes())
    (tmp_path / "classes.json").write_text('{"class_names": ["flower", "tree", "sky"]}')
    code, rows, _ = run_predict_with(onnx, capsys, folder)
    assert code == 0 and len(rows) == 3
    assert {row["label"] for row in rows} <= set(load_info(pipeline / "data/prepared").class_names)


def tiny_model(inputs, outputs, activation="softmax"):
    model = keras.Sequential([keras.Input(inputs), keras.layers.Flatten(),
                              keras.layers.Dense(outputs, activation=activation)])  # fmt: skip
    return model


def saved(model, path, names=None):
    from src.finetune.model import labels

    model.save(path)
    if names is not None:
        labels.add_to_archive(path, tuple(names))
    return path


def test_a_model_without_labels_is_refused_in_one_line(tmp_path, capsys):
    path = saved(tiny_model((8, 8, 3), 3), tmp_path / "old.keras")
    code, rows, err = run_predict_with(path, capsys, tmp_path)
    assert code == 1 and rows == []
    assert err.strip().splitlines() == [
        f"error: predict: {path} holds no class names (a model from before they travelled "
        "with it, or not this pipeline's); rebuild it with dvc repro"
    ]


def test_more_outputs_than_labels_is_refused_in_one_line(tmp_path, capsys):
    path = saved(tiny_model((8, 8, 3), 4), tmp_path / "edited.keras", ["a", "b", "c"])
    code, _, err = run_predict_with(path, capsys, tmp_path)
    assert code == 1
    assert err.strip() == (
        f"error: predict: {path} has 4 outputs but names 3 classes; the file is damaged or "
        "was edited: rebuild it with dvc repro"
    )


def test_a_model_that_takes_no_images_is_refused_in_one_line(tmp_path, capsys):
    path = saved(tiny_model((10,), 2), tmp_path / "tabular.keras", ["a", "b"])
    code, _, err = run_predict_with(path, capsys, tmp_path)
    assert code == 1
    assert err.strip() == (
        f"error: predict: {path} takes inputs of shape (10,), not images (height, width, 1 or "
        "3 channels); give a model this pipeline trained or exported"
    )


def test_logits_are_turned_into_probabilities_and_said(tmp_path, capsys):
    model = tiny_model((8, 8, 3), 3, activation=None)
    keras.utils.set_random_seed(0)
    path = saved(model, tmp_path / "logits.keras", ["a", "b", "c"])
    folder = image_folder(tmp_path / "photos", per_class=1)
    code, rows, err = run_predict_with(path, capsys, "--top-k", "3", folder)
    assert code == 0 and len(rows) == 9  # three images, three classes each
    assert err.strip() == (
        "warning: predict: the model outputs logits, not probabilities; the probabilities "
        "printed are their softmax"
    )
    for first in range(0, len(rows), 3):
        total = sum(float(row["probability"]) for row in rows[first : first + 3])
        assert total == pytest.approx(1.0, abs=1e-5)
