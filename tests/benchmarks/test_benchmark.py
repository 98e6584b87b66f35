"""The benchmarks' process measure: wall time, peak memory and the whole output."""

import sys
import threading

import pytest

from benchmarks.benchmark import measure


def test_a_command_that_prints_more_than_a_pipe_holds_is_not_stopped_by_it(tmp_path):
    printed = "print('x' * 1000, flush=True)\n" * 300  # 300 kB: a pipe holds 64
    measured = {}
    thread = threading.Thread(
        target=lambda: measured.update(measure([sys.executable, "-c", printed], tmp_path, True)),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the command blocked on its own output"
    assert measured["output"].count("x" * 1000) == 300
    assert measured["peak_rss_mb"] > 0 and measured["wall_s"] >= 0


def test_a_failed_command_stops_with_the_end_of_its_output(tmp_path):
    with pytest.raises(SystemExit, match="the last words"):
        measure([sys.executable, "-c", "print('the last words'); raise SystemExit(3)"], tmp_path)
