"""The end-to-end tests' shared fixture: `make demo` on a fresh clone, once for the whole
test run (``tests.support.demo``), so that the first-hour and the sweep tests, which need
it, can run side by side on different workers."""

from __future__ import annotations

import pytest

from tests.support.demo import WORKSPACE, run_demo
from tests.support.shared import built_once


@pytest.fixture(scope="session")
def demo(tmp_path_factory, worker_id) -> dict:
    """The clone where `make demo` ran (see ``run_demo``): tests only read it."""
    root = built_once(tmp_path_factory, worker_id, "demo", run_demo)
    return {
        "repo": root / "repo",
        "output": (root / "output.txt").read_text(),
        "edited": (root / "edited.yaml").read_text(),
        "work": root / "repo" / WORKSPACE,
    }
