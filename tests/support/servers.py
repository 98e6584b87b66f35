"""Servers the tests run on 127.0.0.1: a real MLflow tracking server, and an HTTP server
that misbehaves as asked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from src.finetune.tracking.mlflow.ui import WITHOUT_JOB_RUNNER
from tests.support.commands import command_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` serving artifacts on a free port, with its own SQLite store or
    the ``backend`` database teams run it on (PostgreSQL)."""

    def __init__(self, store: Path, backend: str | None = None) -> None:
        self.store = store
        self.backend = backend
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.store.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri", self.backend or f"sqlite:///{self.store / 'mlflow.db'}",
            "--artifacts-destination", str(self.store / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        with (self.store / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                command, env=command_env(**WITHOUT_JOB_RUNNER),  # as `make ui` starts it
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.store / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(
            f"mlflow server did not start:\n{(self.store / 'server.log').read_text()}"
        )

    def stop(self) -> None:
        """Kill the server and its workers, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalServer:
    """A local HTTP server whose one handler (a ``BaseHTTPRequestHandler``) misbehaves as asked."""

    def __init__(self, handler: type) -> None:
        from http.server import ThreadingHTTPServer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.url = f"{self.base}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_ui(ui) -> None:
    """Stop `python -m src.ui` as a user would (SIGTERM, or Ctrl-C's SIGINT): it stops the
    MLflow server it started, which runs in a session of its own and would outlive a SIGKILL
    of the UI's process group, holding a port and hundreds of MB per process."""
    from src.finetune.tracking.mlflow.ui import stop_group

    if ui.poll() is None:
        stop_group(ui, timeout=60)


def wait_until_answering(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    """Wait for ``url`` to answer while ``process`` (the server behind it) still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the UI exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer")
