"""prepare checks what it wrote: a test split that copies training images is a warning with
the size of the leak, and with data.dedupe the copies are dropped from the test split."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from src.finetune.data.prepared import load_split
from src.stages import prepare
from tests.support.commands import stage_args
from tests.support.params import write_params

ARGS = stage_args("prepare")


def distinct_photos(root, per_class, seed):
    """Class folders of smooth random 32x32 PNGs, no two alike."""
    rng = np.random.default_rng(seed)
    for name in ("cat", "dog", "fox"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(root / name / f"{i}.png")


@pytest.fixture
def leaky(workdir):
    """photos/train/ and photos/test/ of three classes; two test images copy training ones."""
    distinct_photos(workdir / "photos/train", per_class=8, seed=0)
    distinct_photos(workdir / "photos/test", per_class=3, seed=1)
    for name in ("cat", "dog"):
        shutil.copy(workdir / f"photos/train/{name}/5.png", workdir / f"photos/test/{name}/x.png")
    return workdir


def run_prepare(workdir, dedupe):
    write_params(workdir / "params.yaml", {"data.source": "folder", "data.folder": "photos",
                                           "data.dedupe": dedupe, "tracker": "none"})  # fmt: skip
    prepare.main(ARGS)
    return json.loads((workdir / "reports/data_checks.json").read_text())


def test_test_images_copied_from_training_are_a_leak_warning(leaky, caplog):
    with caplog.at_level("WARNING"):
        checks = run_prepare(leaky, dedupe=False)
    leaks = [f for f in checks["duplicates"] if (f["a"], f["b"]) == ("train", "test")]
    assert [(f["kind"], f["pairs"]) for f in leaks] == [("exact", 2)]
    assert sorted(map(tuple, leaks[0]["examples"])) == [
        ("photos/train/cat/5.png", "photos/test/cat/x.png"),
        ("photos/train/dog/5.png", "photos/test/dog/x.png"),
    ], "a folder's duplicates are named by their files"
    assert checks["removed"] == {}
    warning = "2 test image(s) (18.2% of its 11) are identical copies of train images"
    assert any(w.startswith(warning) and "data.dedupe" in w for w in checks["warnings"])
    assert warning in caplog.text


def test_dedupe_drops_the_test_copies_and_says_how_many(leaky):
    checks = run_prepare(leaky, dedupe=True)
    assert checks["removed"] == {"test": 2}
    assert not [f for f in checks["duplicates"] if f["a"] != f["b"]]
    assert not any("between" in w for w in checks["warnings"])
    test = load_split(leaky / "data/prepared", "test")
    assert len(test) == checks["images"]["test"] == 3 * 3 + 2 - checks["removed"]["test"]
    files = json.loads((leaky / "data/prepared/files.json").read_text())
    assert len(files["test"]) == len(test) and "photos/test/cat/x.png" not in files["test"]
