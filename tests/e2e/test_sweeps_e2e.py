"""The README's sweeps, run as written in a terminal 100 columns wide, on a copy of the
clone where `make demo` ran (the ``demo`` fixture): its user made the digits their data."""

import subprocess

import pytest

from tests.support.commands import command_env
from tests.support.demo import digits_made_mine, readme_blocks

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sweep(demo, tmp_path_factory) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The first block of "Comparing and sweeping", each command as the shell runs it."""
    repo = digits_made_mine(demo, tmp_path_factory.mktemp("sweeps") / "repo")
    results = []
    for command in readme_blocks("## Comparing and sweeping")[0]:
        result = subprocess.run(
            command,
            shell=True,
            cwd=repo,
            env=command_env(COLUMNS="100"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        results.append((command, result))
    return results


def test_readme_commands_work_as_written_and_fit_100_columns(sweep):
    assert [command.split()[:3] for command, _ in sweep] == [
        ["dvc", "exp", "run"],
        ["dvc", "exp", "run"],
        ["dvc", "exp", "show"],
        ["dvc", "metrics", "diff"],
        ["dvc", "plots", "diff"],
    ]
    for command, result in sweep:
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}"
    for command, result in sweep[2:4]:
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 100, f"{command}\n{result.stdout}"
    table = sweep[2][1].stdout
    assert "lr-1e-4" in table and "lr-1e-3" in table and "finetuned_accuracy" in table
    assert "finetuned_accuracy" in sweep[3][1].stdout
