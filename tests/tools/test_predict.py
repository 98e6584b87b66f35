"""`python -m src.predict`: CSV of class names and probabilities for files and folders."""

import csv
import io
import json

import keras
import numpy as np
import pytest
from PIL import Image

from src import predict
from src.finetune.data.prepared import load_info, load_split
from tests.support.images import image_folder


def run_predict(pipeline, capsys, *args):
    capsys.readouterr()
    code = 0
    try:
        predict.main(
            ["--model", str(pipeline / "models/phase2.keras"), "--data",
             str(pipeline / "data/prepared"), *map(str, args)]
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
