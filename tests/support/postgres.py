"""A real PostgreSQL server for the tests, in a temporary directory on 127.0.0.1: Debian's
`postgresql` binaries (which `.ci/run` installs), run as the `postgres` user when the tests
run as root, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.servers import free_port


def _binaries() -> Path:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None
    )
    assert found, "PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does)"
    return Path(found).resolve().parent


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` on a free port, trust authentication for 127.0.0.1;
    ``url(database)`` creates the database and gives its SQLAlchemy URL."""

    def __init__(self) -> None:
        self.bin = _binaries()
        self.port = free_port()
        # Not under pytest's tmp_path: the postgres user must be able to reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        finished = subprocess.run(
            [*self.as_owner, *command], capture_output=True, text=True, check=False
        )
        assert finished.returncode == 0, f"{command[0]} failed:\n{finished.stdout}{finished.stderr}"

    def start(self) -> PostgresServer:
        if self.as_owner:
            shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        self._run(
            str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "start",
        )
        return self

    def url(self, database: str) -> str:
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            database,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        data = str(self.folder / "data")
        stop = [*self.as_owner, str(self.bin / "pg_ctl"), "-D", data, "-m", "immediate", "stop"]
        subprocess.run(stop, capture_output=True, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
