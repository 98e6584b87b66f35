"""`make ui` (`python -m src.ui`): one line and no link when it cannot serve; quiet while it
serves; one line when Ctrl-C stops it."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from src.finetune.errors import PipelineError
from src.ui import claim_port
from tests.support.commands import command_env
from tests.support.params import ROOT, write_params
from tests.support.servers import free_port, stop_ui, wait_until_answering


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_params(tmp_path / "params.yaml")
    return tmp_path


def start_ui(project: Path, *args: str) -> subprocess.Popen:
    """The UI as a terminal starts it: in a process group of its own, output in one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "src.ui", *args],
        cwd=project,
        env=command_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finished(project: Path, *args: str) -> tuple[int, str]:
    ui = start_ui(project, *args)
    output, _ = ui.communicate(timeout=120)
    return ui.returncode, output


def test_it_opens_the_latest_execution_when_params_experiment_has_none(workdir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from src.finetune.errors import PipelineError
    from src.finetune.tracking.mlflow.runs import TAG_ROLE
    from src.finetune.tracking.mlflow.ui import experiment_to_open

    write_params(workdir / "params.yaml")  # cifar10: cifar10-finetune, with no runs
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for name in ("digits-finetune", "photos-finetune"):
        experiment_id = client.create_experiment(name)
        client.set_terminated(
            client.create_run(experiment_id, tags={TAG_ROLE: "comparison"}).info.run_id
        )
        time.sleep(0.01)
    latest = client.get_experiment_by_name("photos-finetune").experiment_id
    assert experiment_to_open(client, None) == latest
    digits = client.get_experiment_by_name("digits-finetune").experiment_id
    assert experiment_to_open(client, "digits-finetune") == digits != latest
    with pytest.raises(PipelineError, match="no MLflow experiment is named 'nope'"):
        experiment_to_open(client, "nope")
    own = client.create_experiment("cifar10-finetune")
    client.create_run(own, tags={TAG_ROLE: "comparison"})
    assert experiment_to_open(client, None) == own, "params.yaml's, once it has runs"


def test_a_corrupt_store_is_one_line_and_no_link(project):
    (project / "mlflow.db").write_bytes(os.urandom(4096))
    code, output = finished(project, "--port", str(free_port()))
    assert code == 1 and "http://" not in output
    (line,) = output.strip().splitlines()
    assert line.startswith("error: ui: ") and "mlflow.db is not a usable MLflow store" in line


def test_a_taken_port_is_one_line_and_no_link_to_the_other_server(project):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code, output = finished(project, "--port", str(port))
    assert code == 1 and "http://" not in output
    (line,) = output.strip().splitlines()
    assert f"error: ui: port {port} on 127.0.0.1 is taken" in line and "--port" in line


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_line(project, port, monkeypatch, capsys):
    """In-process: argparse refuses it before the UI imports or starts anything."""
    from src import ui

    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as stopped:
        ui.main([f"--port={port}"])
    output = capsys.readouterr()
    assert stopped.value.code == 2 and "not a port number (1-65535)" in output.err
    assert "http://127" not in output.out + output.err


def test_serving_is_quiet_and_ctrl_c_stops_it_in_one_line(project):
    port = free_port()
    ui = start_ui(project, "--port", str(port))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/health", ui)
        for path in ("/", "/health", "/ajax-api/2.0/mlflow/experiments/search?max_results=5"):
            with urllib.request.urlopen(base + path, timeout=10) as answer:
                assert answer.status == 200
        os.killpg(ui.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        output, _ = ui.communicate(timeout=60)
    finally:
        stop_ui(ui)
    assert ui.returncode == 0
    assert "Traceback" not in output and "GET /" not in output and "INFO" not in output
    lines = output.strip().splitlines()
    assert lines[0].startswith("MLflow UI: http://127.0.0.1:") and lines[-1] == "MLflow UI stopped"
    assert len(lines) <= 4, lines
    with pytest.raises(OSError):  # the server went with it
        urllib.request.urlopen(f"{base}/health", timeout=2)


def test_a_ui_killed_outright_takes_its_server_with_it(project):
    """`kill -9` of the UI: its server, in a session of its own, must not live on."""
    port = free_port()
    ui = start_ui(project, "--port", str(port))
    session = -1
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health", ui)
        (server,) = psutil.Process(ui.pid).children()
        session = server.pid
        assert len(in_session(server.pid)) > 1, "the server and its workers"
        commands = " ".join(" ".join(psutil.Process(pid).cmdline()) for pid in in_session(session))
        assert "uvicorn" in commands and "huey" not in commands, "no job runner: nothing uses it"
        os.kill(ui.pid, signal.SIGKILL)
        ui.wait(timeout=10)
        deadline = time.monotonic() + 60
        while in_session(server.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = in_session(server.pid)
    finally:
        stop_ui(ui)
        for pid in in_session(session):  # a failed test leaves no server behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_killing_the_shell_around_the_ui_takes_the_ui_and_its_server_with_it(project):
    """`make ui` runs the UI under make's shell: a `kill -9` of that shell (or of make) must
    not leave the UI, nor its server, running."""
    port = free_port()
    shell = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -m src.ui --port {port}; echo the UI ended'],
        cwd=project, env=command_env(PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    processes: list[int] = []
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health", shell)
        (ui,) = psutil.Process(shell.pid).children()
        processes = [ui.pid, *(child.pid for child in ui.children(recursive=True))]
        os.kill(shell.pid, signal.SIGKILL)
        shell.wait(timeout=10)
        deadline = time.monotonic() + 60
        while any(psutil.pid_exists(pid) for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [pid for pid in processes if alive(pid)]
    finally:
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def alive(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def in_session(session: int) -> list[int]:
    """The live processes of a session."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def test_a_port_this_user_may_not_use_is_named_so(monkeypatch):
    """Ports below 1024 need root; the tests run as root, so the refusal is simulated."""

    def refuse(self, address):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    with pytest.raises(
        PipelineError,
        match=r"port 80 on 127.0.0.1 is refused to this user: "
        r"Permission denied \(ports below 1024 need root\); choose another",
    ):
        claim_port(80)
    with pytest.raises(PipelineError, match=r"port 5000 on .* user: Permission denied; choose"):
        claim_port(5000)
