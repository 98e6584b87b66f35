"""Where MLflow keeps runs: the repository's own SQLite store or a team's server.

The one place that reads ``MLFLOW_TRACKING_URI`` and ``sqlite:///`` URIs. The local store is
created by one process at a time and switched to WAL journaling; a server is asked for its
health before a stage starts; a store that does not work is one line saying what to do.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from src.finetune.environment import repository_root
from src.finetune.errors import PipelineError, first_line

SQLITE = "sqlite:///"
SERVER_TIMEOUT_S = 5
STORE_LOCK_TIMEOUT_S = 20
# A stalled tracking server must not stall training: fail a request after about twenty
# seconds (three tries of five, with one and two seconds between) instead of MLflow's two
# minutes of retries, unless the user chose otherwise.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
TRACKING_ERRORS = (
    MlflowException,
    requests.RequestException,
    OSError,
    sqlite3.Error,
    SQLAlchemyError,
    FileLockTimeout,
)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Store:
    """A tracking URI and what it is."""

    uri: str

    @property
    def database(self) -> Path | None:
        """The SQLite file of a ``sqlite:///`` store; None for a server."""
        return Path(self.uri.removeprefix(SQLITE)) if self.uri.startswith(SQLITE) else None

    @property
    def own(self) -> bool:
        """Whether this is the repository's own store (mlflow.db at its root), not one chosen
        with MLFLOW_TRACKING_URI: its artifacts follow the repository when it moves."""
        return self.uri == f"{SQLITE}{repository_root() / 'mlflow.db'}"

    @property
    def server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` (a team server) or a SQLite store at the repository root
    (``root``, or the one this process runs in)."""
    database = (root or repository_root()) / "mlflow.db"
    return os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE}{database}"


def configure_client() -> None:
    """MLflow's client as stages need it: quick to give up on a dead server, and quiet about
    the failed queries it raises (a stage says what went wrong in one line of its own)."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def check_server(uri: str) -> None:
    """Fail in seconds, not minutes of retries, when a tracking server does not answer."""
    if not Store(uri).server:
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        pass  # it answered (perhaps an auth proxy asking for credentials): it is up
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = first_line(getattr(error, "reason", None) or error)
        raise PipelineError(
            f"MLflow tracking server {uri[:200]} is not reachable ({reason}); start it, or unset "
            "MLFLOW_TRACKING_URI to log to mlflow.db in the repository"
        ) from None


def with_lock_retries(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``action``, waiting out a SQLite store that another stage holds for a moment."""
    for attempt in range(6):
        try:
            return action(*args, **kwargs)
        except MlflowException as error:
            if "database is locked" not in str(error) or attempt == 5:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def open_store(uri: str) -> Iterator[MlflowClient]:
    """A client whose store exists; a SQLite store is created by one process at a time.

    Parallel experiments (``dvc queue start -j 2``) start stages at the same moment; without
    the lock they would race to create the store's tables. The store is switched to WAL
    journaling, so a stage reading it never blocks another one writing.
    """
    configure_client()
    database = Store(uri).database
    if database is None:
        yield MlflowClient(tracking_uri=uri)
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database}.lock", timeout=STORE_LOCK_TIMEOUT_S):
        yield MlflowClient(tracking_uri=uri)  # creates the tables of a new store
        _use_wal(database)


def _use_wal(database: Path) -> None:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        with contextlib.suppress(sqlite3.OperationalError):  # busy: a later stage retries
            connection.execute("PRAGMA journal_mode=WAL")


def unreachable(error: BaseException) -> bool:
    """Whether the store itself is out of reach (rather than one request being refused)."""
    if not isinstance(error, TRACKING_ERRORS):
        return False
    if isinstance(error, requests.RequestException | FileLockTimeout | sqlite3.OperationalError):
        return True
    text = str(error)
    return any(
        sign in text
        for sign in ("Max retries exceeded", "Connection refused", "timed out", "API request to")
    )


@contextlib.contextmanager
def store_errors_as_one_line(uri: str) -> Iterator[None]:
    """What goes wrong opening the store, as one line saying what to do."""
    try:
        yield
    except PipelineError:
        raise
    except FileLockTimeout:
        raise PipelineError(
            f"{Store(uri).database} stayed locked by another process for "
            f"{STORE_LOCK_TIMEOUT_S} s; wait for it to finish, or stop it"
        ) from None
    except TRACKING_ERRORS as error:
        raise PipelineError(_store_problem(uri, error)) from None


def _store_problem(uri: str, error: BaseException) -> str:
    reason = first_line(error)
    database = Store(uri).database
    if database is not None:
        if "database is locked" in str(error):
            reason = "database is locked"
            return f"{database} is locked by another process ({reason}); wait for it, or stop it"
        return (
            f"{database} is not a usable MLflow store ({reason}); move it aside to start a new "
            "one (`mv mlflow.db mlflow.db.broken`), or point MLFLOW_TRACKING_URI at a server"
        )
    return (
        f"the MLflow store at {uri} does not work ({reason}); check MLFLOW_TRACKING_URI and the "
        "server, or unset MLFLOW_TRACKING_URI to log to mlflow.db in the repository"
    )


def local_artifacts() -> str:
    """Where the repository's own store keeps artifacts: mlartifacts/ beside mlflow.db."""
    return (repository_root() / "mlartifacts").as_uri()


# Where the local store names artifact locations: a move rewrites them.
LOCATIONS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def follow_the_repository(database: Path, location: str) -> None:
    """After the repository was moved or copied, point its store at its own mlartifacts/.

    MLflow keeps absolute artifact locations. A repository moved (or copied) elsewhere would
    go on logging to the old place (or into the original's folder); the local SQLite store
    is the repository's own, so its locations are rewritten from the old root to the new.
    MLflow has no API for this: it is one UPDATE per column that holds a location.
    """
    new = local_artifacts()
    if location == new or not location.endswith("/mlartifacts"):
        return
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection, connection:
        for table, column in LOCATIONS:
            connection.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE substr({column}, 1, ?) = ?",
                (new, len(location) + 1, len(location), location),
            )
    log.info("the repository moved: MLflow artifacts now go to %s", new)
