"""The backbone benchmark measures the int8 file the export stage writes, and its table puts
each backbone's accuracy beside its size and latency."""

import numpy as np

from benchmarks.backbones import by_backbone, markdown, measure
from benchmarks.quality import row_params, summary


def result(row, *vals):
    runs = [
        {"seed": seed, "wall_s": 600.0 + seed * 60, "finetuned_val_accuracy": val,
         "finetuned_accuracy": val - 0.01, "finetuned_accuracy_tta": val}
        for seed, val in enumerate(vals)
    ]  # fmt: skip
    return {"params": row_params(row, "fashion-mnist-1000"), "runs": runs, **summary(runs)}


def exported(name, size):
    return {"backbone": name, "parameters": 4_200_000, "int8_size_mb": size,
            "int8_latency_ms_batch1": 1.5, "int8_latency_ms_batch32": 1.25}  # fmt: skip


def test_the_table_joins_each_backbone_s_accuracy_to_its_int8_file():
    table = {
        "recipe:fashion": result("recipe:fashion", 0.90, 0.92),
        "recipe:fashion@efficientnetlite1": result("recipe:fashion@efficientnetlite1", 0.93),
        "recipe:fashion-full": result("recipe:fashion-full", 0.99),  # another recipe
        "course": result("course", 0.80),
    }
    assert set(by_backbone(table, "fashion")) == {"efficientnetlite0", "efficientnetlite1"}
    measured = {
        "image_size": 48, "machine": "2 CPU cores",
        "backbones": [exported("efficientnetlite0", 4.0), exported("efficientnetlite2", 6.5)],
    }  # fmt: skip
    quality = {"datasets": {"fashion-mnist-1000": table}}
    lines = markdown(quality, measured, "fashion-mnist-1000", "fashion").splitlines()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines if "| eff" in line}
    assert list(rows) == ["efficientnetlite0", "efficientnetlite1", "efficientnetlite2"]
    lite0 = rows["efficientnetlite0"]
    assert "| 2 | 0.910 ± 0.014 | 0.900 ± 0.014 |" in lite0 and "| 10.5 min |" in lite0
    assert "| 4.0 MB | 1.50 ms | 1.25 ms |" in lite0 and "0.99" not in lite0
    assert "| 1 | 0.930 | 0.920 |" in rows["efficientnetlite1"]
    assert rows["efficientnetlite1"].endswith("| n/a | n/a | n/a | n/a |")
    assert rows["efficientnetlite2"].startswith("| efficientnetlite2 | n/a | n/a |")


def test_the_int8_file_is_measured_as_the_export_stage_writes_it():
    calibration = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    (row,) = measure(["tinynet"], 32, calibration, rounds=2, weights=None)
    assert row["backbone"] == "tinynet" and row["parameters"] > 0
    float_mb = row["parameters"] * 4 / 1e6  # 4 bytes a float32 weight
    assert 0 < row["int8_size_mb"] < float_mb  # int8 weights, below the float ones even with
    # the file's own structure around this tiny network
    assert row["int8_latency_ms_batch1"] > 0 and row["int8_latency_ms_batch32"] > 0
