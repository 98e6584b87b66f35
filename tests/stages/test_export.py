"""The export stage on the tiny pipeline: every format written, checked in its own runtime,
recorded in reports/export.json, the report and the model card; a failing format is one line
and the others are still written."""

import json

import numpy as np
import pytest

from src.finetune.data.prepared import load_info, load_split
from src.finetune.entrypoint import run_stage
from src.finetune.export.checks import MIN_AGREEMENT
from src.finetune.export.runtimes import open_model
from src.stages import export
from tests.support.commands import stage_args
from tests.support.params import project_params, tiny_overrides, write_params

ARGS = stage_args("export")


def test_each_default_format_is_written_and_checked_on_the_whole_test_split(pipeline):
    results = json.loads((pipeline / "reports/export.json").read_text())
    test = load_split(pipeline / "data/prepared", "test")
    assert results["test_images"] == len(test) and results["failed"] == {}
    formats = [checked["format"] for checked in results["exports"]]
    assert formats == project_params().export.formats
    by_format = {checked["format"]: checked for checked in results["exports"]}
    assert by_format["onnx"]["agreement"] >= MIN_AGREEMENT
    for checked in results["exports"]:
        assert (pipeline / checked["path"]).exists()
        assert checked["size_mb"] > 0 and checked["latency_ms_batch1"] > 0
    keras_size = results["keras"]["size_mb"]
    assert by_format["litert_int8"]["size_mb"] < keras_size / 3


def test_each_export_predicts_with_the_prepared_class_names(pipeline):
    names = load_info(pipeline / "data/prepared").class_names
    test = load_split(pipeline / "data/prepared", "test")
    images = np.asarray(test.images[:8], np.float32)
    keras_rows = open_model(pipeline / "models/phase2.keras").runtime.predict(images)
    for name in ("model.onnx", "model_int8.tflite"):
        loaded = open_model(pipeline / "models/export" / name)
        assert loaded.class_names == names
        rows = loaded.runtime.predict(images)
        assert rows.shape == keras_rows.shape == (8, len(names))
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=0.02)  # probabilities
        if name.endswith(".onnx"):
            np.testing.assert_allclose(rows, keras_rows, atol=1e-4)
        else:  # int8: close to the float model's probabilities, within its quantisation step
            assert np.abs(rows - keras_rows).max() < 0.1


def test_the_report_and_the_model_card_show_the_exports(pipeline):
    report = (pipeline / "reports/report.md").read_text()
    card = (pipeline / "reports/model_card.md").read_text()
    assert (
        "## Exports" in report and "| onnx | ONNX Runtime | `models/export/model.onnx` |" in report
    )
    assert "| litert_int8 | LiteRT | `models/export/model_int8.tflite` |" in card
    names = load_info(pipeline / "data/prepared").class_names
    assert f"- Classes: {', '.join(names)}." in card
    assert "## How to reproduce it" in card and "dvc repro" in card


def test_a_failing_format_is_one_line_and_the_others_are_written(
    workdir, pipeline, sample_archive, monkeypatch, capsys
):
    archive, sha256 = sample_archive
    write_params(workdir / "params.yaml", tiny_overrides(str(archive), sha256)
                 | {"export.formats": ["litert", "onnx"], "tracker": "none"})  # fmt: skip
    for name in ("data", "models"):
        (workdir / name).mkdir()
    (workdir / "data/prepared").symlink_to(pipeline / "data/prepared")
    (workdir / "models/phase2.keras").symlink_to(pipeline / "models/phase2.keras")
    real = export.export_model

    def litert_fails(model, format, *args):
        if format == "litert":
            raise RuntimeError("converter: op RandomThing is neither a builtin nor a flex op\nmore")
        return real(model, format, *args)

    monkeypatch.setattr(export, "export_model", litert_fails)
    with pytest.raises(SystemExit) as exited:
        run_stage("export", lambda: export.main(ARGS))
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: export: export.formats: litert failed (converter: op RandomThing is neither a "
        "builtin nor a flex op); the others are in models/export; remove the failing format "
        "from export.formats"
    )
    assert sorted(p.name for p in (workdir / "models/export").iterdir()) == ["model.onnx"]
    results = json.loads((workdir / "reports/export.json").read_text())
    assert [c["format"] for c in results["exports"]] == ["onnx"]
    assert results["failed"] == {
        "litert": "converter: op RandomThing is neither a builtin nor a flex op"
    }


def test_no_format_writes_an_empty_folder_and_says_so(workdir, pipeline, sample_archive):
    archive, sha256 = sample_archive
    write_params(workdir / "params.yaml", tiny_overrides(str(archive), sha256)
                 | {"export.formats": [], "tracker": "none"})  # fmt: skip
    (workdir / "data").mkdir()
    (workdir / "models").mkdir()
    (workdir / "data/prepared").symlink_to(pipeline / "data/prepared")
    (workdir / "models/phase2.keras").symlink_to(pipeline / "models/phase2.keras")
    export.main(ARGS)
    assert list((workdir / "models/export").iterdir()) == []
    results = json.loads((workdir / "reports/export.json").read_text())
    assert results["exports"] == [] and results["failed"] == {}
    metrics = json.loads((pipeline / "reports/metrics.json").read_text())
    assert results["keras"]["accuracy"] == pytest.approx(metrics["finetuned_accuracy"])
