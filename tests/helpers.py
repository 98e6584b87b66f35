"""Helpers the tests share: tiny data, params files, scratch projects, real commands, a real
MLflow server, and short training runs. The fixtures built on them live in conftest.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from src.finetune.backbones import BACKBONES
from src.finetune.data import Split
from src.finetune.files import copy_files
from src.finetune.history import HISTORY_COLUMNS, history_frame
from src.finetune.model import build_model
from src.finetune.params import AugmentParams
from src.finetune.sample import write_archive
from src.finetune.training import History, Plan, train

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
TINY_TRAIN, TINY_TEST = 200, 60
# Variables that would point tracking elsewhere, as DVC or a user may have set them.
STAGE_ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME")
# What a clone of the project holds, for end-to-end tests in a temporary git repository.
PROJECT_FILES = (
    "src",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
    "data/images/README.md",
)


def tiny_overrides(archive: str, sha256: str) -> dict[str, Any]:
    return {
        "data.archive": archive,
        "data.sha256": sha256,
        "model.weights": "none",
        "phase1.epochs": 2,
        "phase1.batch_size": 32,
        "phase2.epochs": 2,
        "phase2.batch_size": 32,
        "phase2.lr": 1e-3,
    }


REMOVE = object()  # as an override's value: delete the key


def write_params(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """The project's params.yaml with dotted-key overrides, comments kept."""
    yaml = YAML()
    tree = yaml.load((ROOT / "params.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node[section]
        if value is REMOVE:
            del node[key]
        else:
            node[key] = value
    with path.open("w") as handle:
        yaml.dump(tree, handle)
    return path


def stage_args(stage: str) -> list[str]:
    """Exactly the arguments the stage's command in dvc.yaml passes to its entry point."""
    return shlex.split(PIPELINE["stages"][stage]["cmd"])[3:]


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: this venv on PATH, a git identity, local tracking."""
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    for name in STAGE_ENV:
        env.pop(name, None)
    return env | extra


def run(cwd: Path, *command: str, **env: str) -> str:
    """Run a real executable (dvc, git, mlflow); its output, or a failure showing it."""
    result = subprocess.run(
        command, cwd=cwd, env=command_env(**env), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def repro_and_commit(repo: Path, **env: str) -> str:
    """`dvc repro`, then a commit of everything it wrote; its output."""
    output = run(repo, "dvc", "repro", **env)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "reproduced")
    return output


def start_repro(repo: Path, **popen: Any) -> subprocess.Popen:
    """`dvc repro` in ``repo``, running on: its output (stdout and stderr) in one text pipe."""
    return subprocess.Popen(
        ["dvc", "repro"],
        cwd=repo,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def make_project(
    root: Path, overrides: dict[str, Any] | None = None, images_per_class: int = 0
) -> Path:
    """A committed git + DVC repository of the project on a tiny generated archive (and, with
    ``images_per_class``, a folder of real image files in data/images)."""
    copy_files(PROJECT_FILES, ROOT, root)
    if images_per_class:
        image_folder(root / "data/images", per_class=images_per_class)
    sha256 = write_archive(root / "data/raw/sample.tar.gz", TINY_TRAIN, TINY_TEST, seed=2)
    write_params(
        root / "params.yaml", tiny_overrides("data/raw/sample.tar.gz", sha256) | (overrides or {})
    )
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny pipeline")
    return root


def local_store(repo: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def runs_by_execution(client: MlflowClient) -> list[list[Run]]:
    """The pipeline's runs grouped by execution, oldest first."""
    experiment = client.get_experiment_by_name("cifar10-finetune")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    executions: dict[str, list[Run]] = {}
    for mlflow_run in found:
        executions.setdefault(mlflow_run.data.tags["pipeline.execution"], []).append(mlflow_run)
    return list(executions.values())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` with its own SQLite store, serving artifacts, on a free port."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.store.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}",
            "--artifacts-destination", str(self.store / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        with (self.store / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                command, env=command_env(), stdout=log, stderr=subprocess.STDOUT,
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


# --- short training runs --------------------------------------------------------------------


def tiny_split(n: int = 20, seed: int = 0) -> Split:
    """``n`` random 32x32 images, labels cycling through the ten classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Split(images, np.arange(n, dtype=np.int64) % 10, 10)


def augment(**on: Any) -> AugmentParams:
    """Augmentation params with every key off but those given."""
    off = {
        "flip": False,
        "crop_pad": 0,
        "rotation": 0.0,
        "color_jitter": 0.0,
        "randaugment": 0,
        "erasing": 0.0,
        "mixup": 0.0,
        "cutmix": 0.0,
    }
    return AugmentParams(**(off | on))


def tiny_plan(**overrides: Any) -> Plan:
    """The tests' plan: phase 1, one epoch from 0, batch 10, Adam 1e-3, nothing else, streamed."""
    settings = {
        "phase": "phase1",
        "epochs": 1,
        "initial_epoch": 0,
        "batch_size": 10,
        "seed": 0,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_epochs": 0,
        "label_smoothing": 0.0,
        "early_stopping": 0,
        "augment": augment(),
    }
    return Plan(**(settings | overrides))


def fresh_model(
    dropout: float = 0.0, image_size: int = 32, backbone: str = "efficientnetv2b0"
) -> keras.Model:
    """A backbone with random weights and a new ten-class head on 32x32 images, the same for
    every call."""
    keras.utils.set_random_seed(0)
    return build_model(BACKBONES[backbone], None, dropout, image_size, (32, 32, 3), 10)


def brief_train(
    model: keras.Model,
    splits: tuple[Split, Split] | None = None,
    callbacks: tuple = (),
    backup: Any = None,
    **plan: Any,
) -> History:
    """``train`` on tiny splits along the tests' plan, overridden by ``plan``."""
    splits = splits or (tiny_split(), tiny_split(seed=1))
    return train(model, splits, tiny_plan(**plan), callbacks=callbacks, backup=backup)


def frame(first: int, n: int) -> pd.DataFrame:
    """A history of ``n`` epochs from ``first``, with made-up numbers."""
    rows = [{"epoch": first + i, **{c: 0.1 * i for c in HISTORY_COLUMNS[1:]}} for i in range(n)]
    return history_frame(rows)


# --- image folders ----------------------------------------------------------------------------

# Every mode and format a folder may hold, as (Pillow mode, suffix): the tests' folders mix them.
IMAGE_KINDS = (
    ("RGB", ".jpg"),
    ("RGB", ".png"),
    ("L", ".png"),
    ("RGBA", ".png"),
    ("P", ".gif"),
    ("CMYK", ".jpg"),
    ("I;16", ".png"),
    ("RGB", ".webp"),
    ("RGB", ".bmp"),
)


def write_image(path: Path, mode: str, size: tuple[int, int], shade: int) -> Path:
    """A real image file: a gradient of ``shade`` in ``mode``, ``size`` = (width, height)."""
    from PIL import Image

    width, height = size
    ramp = np.linspace(0, 1, width)[None, :] * np.ones((height, 1))
    rgb = np.stack([ramp * shade, (1 - ramp) * 255, np.full_like(ramp, shade)], axis=-1)
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode == "I;16":
        image = Image.fromarray((ramp * 257 * shade).astype(np.uint16))
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def image_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog", "fox")):
    """One sub-folder per class of real images in mixed sizes, modes and formats."""
    for index, name in enumerate(classes):
        for i in range(per_class):
            mode, suffix = IMAGE_KINDS[(i + index) % len(IMAGE_KINDS)]
            size = (20 + 13 * i, 30 + 7 * index)
            write_image(root / name / f"{i:03d}{suffix}", mode, size, shade=60 + 60 * index)
    return root


# --- a real browser ---------------------------------------------------------------------------


def rendered_page(url: str, wait_ms: int = 20_000) -> str:
    """The DOM of ``url`` after Debian's headless Chromium ran its scripts (no network)."""
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium (.ci/run installs it)"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1600,1000",
             f"--virtual-time-budget={wait_ms}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def page_text(html: str) -> list[str]:
    """The visible strings of a page, one per element."""
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", html, flags=re.S)
    return [line.strip() for line in re.sub(r"<[^>]+>", "\n", text).splitlines() if line.strip()]


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
