import errno

import pytest

from src.finetune.entrypoint import run_stage
from src.finetune.errors import first_line


def test_first_line_is_one_short_line_or_the_type():
    assert first_line(ValueError("bad value\nTraceback ...")) == "bad value"
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(RuntimeError("x" * 300), limit=10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "models/phase1.keras"),
         "error: phase1_extract: cannot write models/phase1.keras: the disk is full; "
         "free some space"),
        (OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300),
         "error: phase1_extract: cannot use " + "a" * 200 + ": File name too long; check the path"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "reports/report.md"),
         "error: phase1_extract: cannot use reports/report.md: Is a directory; check the path"),
    ],
    ids=["disk-full", "name-too-long", "a-directory"],
)  # fmt: skip
def test_an_os_error_about_a_path_is_one_line_naming_it(error, expected, capsys):
    def fail():
        raise error

    with pytest.raises(SystemExit) as exited:
        run_stage("phase1_extract", fail)
    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines() == [expected]


def test_an_os_error_about_no_path_keeps_its_traceback():
    def fail():
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        run_stage("phase1_extract", fail)
