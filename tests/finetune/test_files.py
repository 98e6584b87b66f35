import pandas as pd
import pytest
from pydantic import BaseModel

from src.finetune.errors import PipelineError
from src.finetune.files import atomic_path, content_hash, read_json, write_csv, write_json


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("name", ["phase1.keras", "epoch-3.weights.h5"])
def test_partial_file_keeps_the_suffixes_writers_need(tmp_path, name):
    suffixes = "".join((tmp_path / name).suffixes)
    with atomic_path(tmp_path / name) as partial:
        assert partial.name.endswith(suffixes) and partial != tmp_path / name
        partial.write_text("x")
    assert (tmp_path / name).read_text() == "x"


def test_content_hash_of_files_and_directories(tmp_path):
    write_csv(tmp_path / "d" / "a.csv", pd.DataFrame({"x": [1]}))
    before = content_hash(tmp_path / "d")
    assert content_hash(tmp_path / "d") == before
    (tmp_path / "d" / "b.csv").write_text("x\n2\n")
    assert content_hash(tmp_path / "d") != before
    assert content_hash(tmp_path / "d" / "a.csv") != content_hash(tmp_path / "d" / "b.csv")


def test_an_output_that_cannot_be_replaced_is_named_not_its_temporary_sibling(tmp_path):
    output = tmp_path / "figure.png"
    output.mkdir()  # a directory where the file belongs
    with pytest.raises(OSError) as raised, atomic_path(output) as partial:
        partial.write_bytes(b"png")
    assert raised.value.filename == str(output)
    assert list(tmp_path.iterdir()) == [output]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found; rerun"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[" * 100_000, "is not valid JSON"),
        (b"[1]", "is not a JSON object"),
        (b"{}", "lacks count"),
        (b'{"count": "many"}', "count: input should be a valid integer"),
    ],
)
def test_read_json_gives_one_line_for_each_kind_of_damage(tmp_path, content, message):
    class Counted(BaseModel):
        count: int

    path = tmp_path / "counted.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        read_json(path, Counted, "rerun")
