"""The benchmarks' process measure: wall time, peak memory and the whole output."""

import subprocess
import sys
import threading
import time

import psutil
import pytest

from benchmarks.benchmark import ROOT, measure


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


def test_a_killed_benchmark_leaves_no_command_running(tmp_path):
    child = tmp_path / "child.pid"
    command = f"import os, time; open({str(child)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    script = (
        "import sys; from pathlib import Path; from benchmarks.benchmark import measure; "
        f"measure([sys.executable, '-c', {command!r}], Path({str(tmp_path)!r}))"
    )
    benchmark = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (child.is_file() and child.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    benchmark.kill()  # SIGKILL: no handler of its own can run
    benchmark.wait()
    pid, deadline = int(child.read_text()), time.monotonic() + 10
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(pid), "the command outlived its killed benchmark"


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_command_that_ends_before_the_first_sample_still_has_its_peak_memory(tmp_path):
    """`true` ends within a millisecond, before the loop samples it: the kernel's peak counts."""
    measured = [measure(["true"], tmp_path) for _ in range(5)]
    assert all(m["peak_rss_mb"] > 0 for m in measured), measured


def test_with_progress_each_stage_dvc_starts_is_printed_once_as_it_starts(tmp_path, capsys):
    """A stage announced across two writes (half a line, then the rest) is printed once,
    when its line is whole; the command's other lines are not."""
    command = (
        "import sys, time\n"
        "print(\"Running stage 'prepare':\", flush=True)\n"
        "print('Epoch 1/5', flush=True); time.sleep(0.4)\n"
        'sys.stdout.write("Running stage \'phase1"); sys.stdout.flush(); time.sleep(0.4)\n'
        'print("_extract\':", flush=True); time.sleep(0.4)\n'
    )
    measured = measure([sys.executable, "-c", command], tmp_path, keep_output=True, progress=True)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in printed] == ["prepare", "phase1_extract"]
    assert all(line.split()[1] == "s" for line in printed)
    assert "Epoch 1/5" in measured["output"]
    measure([sys.executable, "-c", command], tmp_path)
    assert capsys.readouterr().out == "", "without progress, nothing is printed"
