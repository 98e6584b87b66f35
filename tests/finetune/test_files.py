import os
import re
import zipfile

import pandas as pd
import pytest
from pydantic import BaseModel

from src.finetune.errors import PipelineError
from src.finetune.files import (
    LARGE_MEMBER,
    SMALL_MEMBER,
    atomic_path,
    bounded_zip,
    check_file_size,
    content_hash,
    read_json,
    read_member,
    write_csv,
    write_json,
)
from tests.support.bombs import peak_memory, write_zip_bomb


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
        (SMALL_MEMBER + 1, r"is 16 MB, more than the 16 MB it may hold; it was not read: rerun"),
    ],
)
def test_read_json_gives_one_line_for_each_kind_of_damage(tmp_path, content, message):
    class Counted(BaseModel):
        count: int

    path = tmp_path / "counted.json"
    if isinstance(content, int):  # that many bytes, written as a sparse file
        path.write_bytes(b'{"count": 1}')
        os.truncate(path, content)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        read_json(path, Counted, "rerun")


def test_a_zip_whose_members_fit_is_read(tmp_path):
    path = tmp_path / "small.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b'{"a": 1}' * 1000)
    with bounded_zip(path, "fix it") as archive:
        assert read_member(archive, "config.json", SMALL_MEMBER, "fix it") == b'{"a": 1}' * 1000
        with pytest.raises(PipelineError, match=r"config\.json holds more than 0\.1 KB; .*fix it$"):
            read_member(archive, "config.json", 100, "fix it")


@pytest.mark.parametrize(
    ("size", "limits", "problem"),
    [
        (300_000_000, None, "inflates to 300 MB, more than the 16 MB it may hold"),
        (300_000_000, {"config.json": LARGE_MEMBER}, r"inflates to 300 MB from [\d.]+ KB, a "),
        (SMALL_MEMBER - 1000, None, r"inflates to 16 MB from [\d.]+ KB, a compression no "),
    ],
    ids=["over-the-cap", "absurd-ratio-under-a-large-cap", "absurd-ratio-under-the-cap"],
)
def test_a_zip_bomb_is_refused_before_any_member_is_read(tmp_path, size, limits, problem):
    path = write_zip_bomb(tmp_path / "bomb.zip", "config.json", size)
    assert path.stat().st_size < 1_000_000
    with (
        peak_memory() as peak,
        pytest.raises(PipelineError) as refused,
        bounded_zip(path, "rebuild it", limits),
    ):
        pass
    assert re.fullmatch(
        rf"{path}: config\.json {problem}.*; it was not read: rebuild it", str(refused.value)
    )
    assert peak.bytes < 10_000_000


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "epoch-1.weights.h5"
    path.write_bytes(b"x" * 2000)
    check_file_size(path, 2000, "fix it")
    with pytest.raises(PipelineError, match=r"is 2\.0 KB, more than the 2\.0 KB it may hold"):
        check_file_size(path, 1999, "fix it")
