import errno
import logging
import os
import signal
import subprocess
import sys
import warnings

import pytest

from src.finetune.entrypoint import run_stage
from src.finetune.errors import first_line
from tests.support.params import ROOT


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


def test_other_libraries_routine_notices_are_kept_out_and_real_warnings_are_not(monkeypatch):
    from src.finetune.entrypoint import quiet_libraries

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn(
            "In the future `np.object` will be defined as ...", FutureWarning, stacklevel=1
        )
        warnings.warn(
            "    Warning: tf.lite.Interpreter is deprecated and ...", UserWarning, stacklevel=1
        )
        warnings.warn("a real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["a real problem"]
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"


def test_litert_notices_written_by_native_code_are_filtered_and_the_rest_passes(capfd):
    from src.finetune.entrypoint import LITERT_NOTICES, native_notices_filtered

    with native_notices_filtered(LITERT_NOTICES):
        os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 a real error from C++\n")
    assert capfd.readouterr().err == "E0000 a real error from C++\n"


def test_a_stop_inside_a_database_call_is_one_line_not_sqlalchemys_traceback(stopping, caplog):
    """SIGTERM landing in MLflow's SQLAlchemy fetch made closing the cursor fail, logged as
    an ERROR with a traceback beside the stop's one line."""
    from src.finetune.entrypoint import Interrupted

    pool = logging.getLogger("sqlalchemy.pool.impl.QueuePool")  # where SQLAlchemy logs it
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    with caplog.at_level(logging.DEBUG):
        pool.error("Error closing cursor", exc_info=ValueError("cursor in use"))
        logging.getLogger("src.finetune").error("a stage's own error")
    assert [r.getMessage() for r in caplog.records] == ["a stage's own error"]


def test_a_stop_inside_a_held_block_ends_it_at_its_end(stopping):
    from src.finetune.entrypoint import Interrupted, stops_held

    done = []
    with pytest.raises(Interrupted, match="stopped by SIGTERM"), stops_held():
        with stops_held():  # nested: the outer block's end is the one that counts
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]
    with pytest.raises(Interrupted, match="stopped by SIGINT"):  # nothing held any more
        os.kill(os.getpid(), signal.SIGINT)


def test_a_second_stop_inside_a_held_block_does_not_wait(stopping):
    from src.finetune.entrypoint import Interrupted, stops_held

    done = []
    with pytest.raises(Interrupted, match="stopped by SIGINT"), stops_held():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the first")
        os.kill(os.getpid(), signal.SIGINT)
        done.append("after the second")
    assert done == ["after the first"]
    with stops_held():  # the stop was taken: a later block ends as it would
        done.append("later")
    assert done == ["after the first", "later"]


def test_a_stop_held_while_the_block_fails_outranks_the_error(stopping):
    from src.finetune.entrypoint import Interrupted, stops_held

    with pytest.raises(Interrupted) as stopped, stops_held():
        os.kill(os.getpid(), signal.SIGTERM)
        raise ValueError("the store refused the call")
    assert isinstance(stopped.value.__context__, ValueError)


# A finished stage's process, with what a normal exit finishes: a thread pool still open, a
# thread that is not a daemon still writing, an atexit handler, a line not yet flushed.
FINISHED_STAGE = """
import atexit, pathlib, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from src.finetune.entrypoint import exit_without_teardown
out = pathlib.Path(sys.argv[1])
ThreadPoolExecutor(2).submit(print, "pool", flush=True).result()  # its worker waits on
def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()
atexit.register(lambda: (out / "atexit").write_text("done"))
sys.stdout.write("last line, unflushed")
exit_without_teardown(3)
"""


def test_exit_without_teardown_still_finishes_what_a_normal_exit_does(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", FINISHED_STAGE, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout == "pool\nlast line, unflushed"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "done"


def main_block(module: str) -> str:
    """What a module runs as ``python -m``: its ``if __name__ == "__main__":`` block."""
    source = (ROOT / module).read_text()
    _, found, block = source.partition('if __name__ == "__main__":\n')
    assert found, f"{module} has no __main__ block"
    return block.strip()


@pytest.mark.parametrize(
    "module", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src").glob("[!_]*.py"))
)
def test_every_tool_ends_its_process_without_the_teardown(module):
    """A tool's process, like a stage's, ends once its main returns: ``src.predict`` on one
    image would otherwise wait 1 to 2.5 s more for TensorFlow's teardown."""
    assert main_block(module).startswith("run_process("), module


def test_every_stage_runs_as_its_declaration_says():
    stages = sorted((ROOT / "src/stages").glob("[!_]*.py"))
    mains = [p for p in stages if 'if __name__ == "__main__":' in p.read_text()]
    assert len(mains) == 6
    assert all(main_block(str(p.relative_to(ROOT))) == "STAGE.run(main)" for p in mains)
