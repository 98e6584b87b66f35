"""The README's queued sweeps, run as written, on a copy of the clone where `make demo` ran
(the ``demo`` fixture): its user made the digits their data, whose images git does not track
and the commands copy into each experiment's temporary repository with -C."""

import json
import shlex
import time

import pytest

from tests.support.commands import run
from tests.support.demo import digits_made_mine, readme_blocks

pytestmark = pytest.mark.e2e


def test_queued_sweeps_run_as_the_readme_shows_them(demo, tmp_path):
    repo = digits_made_mine(demo, tmp_path / "repo")
    commands = readme_blocks("## Comparing and sweeping")[1]
    assert [c.split()[:3] for c in commands] == [
        ["dvc", "exp", "run"], ["dvc", "exp", "run"], ["dvc", "queue", "start"],
    ]  # fmt: skip
    for command in commands:
        run(repo, *shlex.split(command), COLUMNS="100")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run(repo, "dvc", "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = json.dumps(json.loads(run(repo, "dvc", "exp", "show", "--json")))
    assert "tta-2" in shown and "tta-4" in shown
