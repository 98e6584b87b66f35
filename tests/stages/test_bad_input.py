"""Bad input, case by case: one clear line naming the problem and its fix, exit code 1,
no traceback, no output written, no MLflow run left running.

Each case runs a stage's real entry point (as `python -m src.stages.<stage>` does) in a
directory holding that stage's inputs, with one of them broken.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import pytest
from mlflow.tracking import MlflowClient

from src.finetune.data.archives import sha256_of
from src.finetune.entrypoint import run_stage
from src.stages import evaluate, phase1_extract, phase2_finetune, prepare, report
from tests.support.commands import PIPELINE, stage_args
from tests.support.params import REMOVE, tiny_overrides, write_params

STAGES = {m.STAGE.name: m for m in (prepare, phase1_extract, phase2_finetune, evaluate, report)}


@dataclass(frozen=True)
class Case:
    stage: str
    expected: str  # a fragment of the one error line
    params: dict | None = None  # overrides of the tiny params
    breaks: Callable[[Path, Path], None] | None = None  # (workdir, pipeline) -> None


def params_text(text: str) -> Callable[[Path, Path], None]:
    def write(workdir: Path, _: Path) -> None:
        (workdir / "params.yaml").write_text(text)

    return write


def archive_replaced_by(content: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    """Put other bytes where data.archive points, with data.sha256 set to match them."""

    def write(workdir: Path, _: Path) -> None:
        archive = workdir / "data/raw/sample.tar.gz"
        archive.write_bytes(content(archive))
        write_params(
            workdir / "params.yaml", params_for(workdir, {"data.sha256": sha256_of(archive)})
        )

    return write


def first_half(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def other_layout(_: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
    return buffer.getvalue()


def replace(relative: str, content: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    def write(workdir: Path, _: Path) -> None:
        path = workdir / relative
        data = content(path)
        path.unlink()
        path.write_bytes(data)

    return write


def remove(relative: str) -> Callable[[Path, Path], None]:
    return lambda workdir, _: (workdir / relative).unlink()


def lambda_checkpoint(workdir: Path, _: Path) -> None:
    """A checkpoint that would run Python code on load, as a tampered download might."""
    path = workdir / "models/phase1.keras"
    path.unlink()
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(lambda x: x * 2)]).save(path)


def foreign_checkpoint(relative: str) -> Callable[[Path, Path], None]:
    """A valid Keras checkpoint that the pipeline did not write (another network)."""

    def write(workdir: Path, _: Path) -> None:
        path = workdir / relative
        path.unlink()
        inputs = keras.Input((32, 32, 3))
        outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
        keras.Model(inputs, outputs).save(path)

    return write


def not_a_weights_file(workdir: Path, _: Path) -> None:
    (workdir / "weights.h5").write_text("these are not weights\n")
    write_params(workdir / "params.yaml", params_for(workdir, {"model.weights": "weights.h5"}))


CASES = {
    # params.yaml: wrong types
    "string-for-integer": Case(
        "prepare", "phase1.epochs: input should be a valid integer", {"phase1.epochs": "ten"}
    ),
    "string-for-number": Case(
        "prepare", "phase2.lr: input should be a valid number", {"phase2.lr": "fast"}
    ),
    "fraction-for-integer": Case(
        "prepare", "phase1.batch_size: input should be a valid integer", {"phase1.batch_size": 32.5}
    ),
    "bad-checksum-format": Case(
        "prepare", "data.sha256: string should match pattern", {"data.sha256": "abc"}
    ),
    # params.yaml: out of range
    "val-split-above-one": Case(
        "prepare", "data.val_split: input should be less than 1", {"data.val_split": 1.5}
    ),
    "unfreeze-more-than-the-base": Case(
        "prepare",
        "phase2.unfreeze_last: 30 is more than the 21 layers of tinynet; use 0..21",
        {"phase2.unfreeze_last": 30},
    ),
    "image-too-small": Case(
        "prepare",
        "data.image_size: input should be greater than or equal to 32",
        {"data.image_size": 16},
    ),
    "dropout-of-one": Case(
        "prepare", "model.dropout: input should be less than 1", {"model.dropout": 1.0}
    ),
    "zero-learning-rate": Case(
        "prepare", "phase1.lr: input should be greater than 0", {"phase1.lr": 0.0}
    ),
    # params.yaml: unknown, missing, malformed
    "typo-in-a-key": Case(
        "prepare", "phase2.lrr: unknown key; did you mean lr?", {"phase2.lrr": 1e-4}
    ),
    "unknown-section": Case("prepare", "optimizer: unknown key", {"optimizer": {"name": "sgd"}}),
    "missing-key": Case("prepare", "phase1.epochs: missing key; add it", {"phase1.epochs": REMOVE}),
    "malformed-yaml": Case(
        "prepare",
        "params.yaml: malformed YAML (line 3): expected ',' or ']'",
        breaks=params_text("seed: 42\nphase1: [epochs: 1\n"),
    ),
    "not-a-mapping": Case(
        "prepare", "expected a mapping of sections", breaks=params_text("- seed\n- data\n")
    ),
    "weights-path-missing": Case(
        "prepare",
        "model.weights: expected imagenet, none or the path",
        {"model.weights": "weights/absent.h5"},
    ),
    # the archive
    "checksum-mismatch": Case(
        "prepare",
        "expected " + "0" * 64 + " (data.sha256); the file was not used",
        {"data.sha256": "0" * 64},
    ),
    "truncated-archive": Case(
        "prepare",
        "is truncated or not a .tar.gz (Compressed file ended before",
        breaks=archive_replaced_by(first_half),
    ),
    "archive-of-another-layout": Case(
        "prepare",
        "is not the CIFAR-10 python archive: missing cifar-10-batches-py/",
        breaks=archive_replaced_by(other_layout),
    ),
    "archive-not-gzip": Case(
        "prepare",
        "is truncated or not a .tar.gz",
        breaks=archive_replaced_by(lambda _: b"<html>Not Found</html>"),
    ),
    # checkpoints, weights, histories, metrics
    "missing-checkpoint": Case(
        "phase2_finetune",
        "models/phase1.keras not found; run `dvc repro phase1_extract` first",
        breaks=remove("models/phase1.keras"),
    ),
    "corrupt-checkpoint": Case(
        "phase2_finetune",
        "is not a readable Keras checkpoint",
        breaks=replace("models/phase1.keras", lambda _: b"PK\x03\x04junk"),
    ),
    "truncated-checkpoint": Case(
        "evaluate",
        "models/phase2.keras is not a readable Keras checkpoint",
        breaks=replace("models/phase2.keras", first_half),
    ),
    "foreign-checkpoint-for-phase2": Case(
        "phase2_finetune",
        "models/phase1.keras holds a model this pipeline did not build, not the tinynet",
        breaks=foreign_checkpoint("models/phase1.keras"),
    ),
    "foreign-checkpoint-for-evaluate": Case(
        "evaluate",
        "models/phase2.keras holds a model this pipeline did not build",
        breaks=foreign_checkpoint("models/phase2.keras"),
    ),
    "checkpoint-of-another-backbone": Case(
        "evaluate",
        "holds a tinynet model for 10 classes of (32, 32, 3) images, not the resnet50v2",
        {"model.backbone": "resnet50v2"},
    ),
    "folder-source-without-the-folder": Case(
        "prepare",
        "data.folder: ",
        {"data.source": "folder", "data.folder": "nowhere/photos"},
    ),
    "checkpoint-with-code": Case(
        "evaluate", "holds code (a Lambda layer) that Keras safe mode", breaks=lambda_checkpoint
    ),
    "weights-file-not-weights": Case(
        "phase1_extract", "is not a weights file for TinyNet", breaks=not_a_weights_file
    ),
    "history-with-wrong-columns": Case(
        "phase2_finetune",
        "phase1_history.csv: expected columns epoch, accuracy",
        breaks=replace("reports/phase1_history.csv", lambda _: b"epoch,acc\n1,0.5\n"),
    ),
    "prepared-data-missing": Case(
        "phase1_extract",
        "run `dvc repro prepare` first",
        breaks=remove("data/prepared/train_images.npy"),
    ),
    "metrics-not-json": Case(
        "report",
        "metrics.json is not valid JSON",
        breaks=replace("reports/metrics.json", lambda _: b"{'accuracy': "),
    ),
    "metrics-without-its-keys": Case(
        "report",
        "metrics.json lacks finetuned_accuracy",
        breaks=replace("reports/metrics.json", lambda _: b'{"baseline_accuracy": 0.5}'),
    ),
    "metrics-with-half-the-tta": Case(
        "report",
        "metrics.json: its content: it has some of baseline_accuracy_tta",
        breaks=replace(
            "reports/metrics.json",
            lambda old: json.dumps(
                json.loads(old.read_text()) | {"baseline_accuracy_tta": 0.5}
            ).encode(),
        ),
    ),
    "per-class-of-other-classes": Case(
        "report",
        "per_class.json: its content: baseline, finetuned and finetuned_details name different "
        "classes",
        breaks=replace(
            "reports/per_class.json",
            lambda old: json.dumps(json.loads(old.read_text()) | {"finetuned": {}}).encode(),
        ),
    ),
    "export-accuracy-of-150-percent": Case(
        "report",
        "export.json: keras.accuracy: input should be less than or equal to 1",
        breaks=replace(
            "reports/export.json",
            lambda old: json.dumps(
                json.loads(old.read_text())
                | {"keras": json.loads(old.read_text())["keras"] | {"accuracy": 1.5}}
            ).encode(),
        ),
    ),
    "data-checks-with-a-negative-count": Case(
        "report",
        "data_checks.json: images.train: input should be greater than or equal to 0",
        breaks=replace(
            "reports/data_checks.json",
            lambda old: json.dumps(
                json.loads(old.read_text()) | {"images": {"train": -3, "val": 1, "test": 1}}
            ).encode(),
        ),
    ),
    "history-of-binary-junk": Case(
        "report",
        "phase1_history.csv is not a readable CSV file",
        breaks=replace("reports/phase1_history.csv", lambda _: b"\xff\xfe\x00junk"),
    ),
    "summary-not-json": Case(
        "report",
        "phase2_summary.json is not valid JSON",
        breaks=replace("reports/phase2_summary.json", lambda _: b"{"),
    ),
    "warm-up-as-long-as-the-phase": Case(
        "prepare",
        "phase2.warmup_epochs: 2 must be fewer than the phase's epochs (2)",
        {"phase2.warmup_epochs": 2},
    ),
    "unknown-optimizer": Case(
        "prepare",
        "phase1.optimizer: input should be 'adam', 'adamw' or 'sgd'",
        {"phase1.optimizer": "lamb"},
    ),
    "training-turns-nan": Case(
        "phase1_extract", "training diverged: the loss is not finite", {"phase1.lr": 1e38}
    ),
}


def params_for(workdir: Path, overrides: dict) -> dict:
    sha256 = sha256_of(workdir / "data/raw/sample.tar.gz")
    return tiny_overrides("data/raw/sample.tar.gz", sha256) | overrides


def stage_files(stage: str, kind: str) -> list[str]:
    entries = PIPELINE["stages"][stage].get(kind, []) + (
        PIPELINE["stages"][stage].get("metrics", []) if kind == "outs" else []
    )
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def copy_inputs(stage: str, workdir: Path, pipeline: Path, archive: Path) -> None:
    """The stage's inputs as DVC would check them out: copies, so breaking one is local."""
    (workdir / "data/raw").mkdir(parents=True)
    (workdir / "data/raw/sample.tar.gz").write_bytes(archive.read_bytes())
    for dep in stage_files(stage, "deps"):
        source = pipeline / dep
        if dep.startswith("src/") or not source.exists():
            continue
        files = sorted(source.rglob("*")) if source.is_dir() else [source]
        for file in (f for f in files if f.is_file()):
            target = workdir / file.relative_to(pipeline)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gives_one_line_and_writes_nothing(
    name, workdir, pipeline, sample_archive, capsys
):
    case = CASES[name]
    copy_inputs(case.stage, workdir, pipeline, sample_archive[0])
    write_params(workdir / "params.yaml", params_for(workdir, case.params or {}))
    if case.breaks:
        case.breaks(workdir, pipeline)
    capsys.readouterr()

    stage = STAGES[case.stage]
    with pytest.raises(SystemExit) as exited:
        run_stage(case.stage, lambda: stage.main(stage_args(case.stage)))

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exited.value.code == 1
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: {case.stage}: ") and case.expected in errors[0], errors[0]
    written = [out for out in stage_files(case.stage, "outs") if (workdir / out).exists()]
    assert written == [], f"{written} written despite the error"
    assert not list(workdir.glob("models/.*_backup"))
    # Tracking goes to this folder's store (the workdir fixture unsets MLFLOW_TRACKING_URI):
    # a stage that failed before opening it has no runs to leave RUNNING.
    if (workdir / "mlflow.db").exists():
        client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []


def test_the_table_reaches_every_stage():
    assert len(CASES) >= 20
    assert {case.stage for case in CASES.values()} == set(STAGES)
