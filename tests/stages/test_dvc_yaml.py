"""dvc.yaml agrees with each stage's declaration and declares exactly what its code reads."""

import ast
import subprocess
from pathlib import Path

import pytest

from tests.support.commands import PIPELINE, STAGES, stage_module
from tests.support.params import ROOT


def paths(entries):
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}


def declaration(name):
    return stage_module(name).STAGE


def test_dvc_yaml_has_a_stage_for_each_stage_script_and_no_other():
    scripts = {p.stem for p in (ROOT / "src/stages").glob("*.py")} - {
        "__init__",
        "declaration",
        "phase",
    }
    assert set(STAGES) == scripts


@pytest.mark.parametrize("name", STAGES)
def test_the_command_is_the_declared_one(name):
    assert PIPELINE["stages"][name]["cmd"] == declaration(name).command()


@pytest.mark.parametrize("name", STAGES)
def test_params_logged_by_a_stage_are_the_ones_dvc_tracks_for_it(name):
    assert tuple(PIPELINE["stages"][name].get("params", ())) == declaration(name).params


@pytest.mark.parametrize("name", STAGES)
def test_declared_inputs_are_deps_and_declared_outputs_are_outs(name):
    stage, entry = declaration(name), PIPELINE["stages"][name]
    outs = paths(entry.get("outs")) | paths(entry.get("metrics"))
    assert {file.path for file in stage.inputs.values()} <= paths(entry["deps"])
    assert {file.path for file in stage.outputs.values()} == outs
    data_deps = {dep for dep in paths(entry["deps"]) if not dep.startswith(("src/", "${"))}
    assert data_deps == {file.path for file in stage.inputs.values()}, "undeclared data deps"


@pytest.mark.parametrize("name", ["phase1_extract", "phase2_finetune"])
def test_training_backups_are_private_to_their_stage_and_ignored_by_git(name):
    stage, entry = declaration(name), PIPELINE["stages"][name]
    backup = stage.backup.path
    declared = paths(entry.get("deps")) | paths(entry.get("outs"))
    assert backup not in declared, "DVC would delete it before the stage runs, losing the resume"
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", f"{backup}/state.json"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, f"{backup} is not git-ignored"


@pytest.mark.parametrize("name", STAGES)
def test_every_code_dep_exists(name):
    deps = paths(PIPELINE["stages"][name]["deps"])
    assert f"src/stages/{name}.py" in deps
    assert all((ROOT / dep).exists() for dep in deps if dep.startswith("src/"))


# Imported by stages but changing nothing they compute: how runs are logged and errors read,
# how files are written and which damaged ones are refused when read back (the bounds of the
# numbers in them), where the process runs, how a stage's paths become arguments (the paths
# themselves are in dvc.yaml). dvc.yaml leaves them out of the deps on purpose.
LOGGING_ONLY = {
    "src/stages/__init__.py",
    "src/stages/declaration.py",
    "src/finetune/__init__.py",
    "src/finetune/entrypoint.py",
    "src/finetune/environment.py",
    "src/finetune/errors.py",
    "src/finetune/files.py",
    "src/finetune/numbers.py",
    *(p.relative_to(ROOT).as_posix() for p in (ROOT / "src/finetune/tracking").rglob("*.py")),
}


def module_file(name: str) -> Path | None:
    """The file of a project module or package, by its dotted name."""
    base = ROOT / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if name.startswith("src.") and candidate.is_file():
            return candidate
    return None


def project_imports(path: Path) -> set[str]:
    """The project's modules a file imports, anywhere in it, as paths from the root; not
    those under ``if TYPE_CHECKING:``, which never run."""
    found = set()
    for node in _running_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if file := module_file(name):
                found.add(file.relative_to(ROOT).as_posix())
    return found


def _running_nodes(tree: ast.AST):
    """Every node of ``tree`` but those of ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            yield from (n for orelse in node.orelse for n in [orelse, *_running_nodes(orelse)])
            continue
        yield node
        yield from _running_nodes(node)


def code_closure(stage_file: str) -> set[str]:
    """Every project module the stage imports, directly or through another module; package
    files (``__init__.py``) only where something is imported from them."""
    seen, todo = set(), [stage_file]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        if module not in LOGGING_ONLY:
            todo += sorted(project_imports(ROOT / module))
    return {m for m in seen if not m.endswith("__init__.py") or _defines_something(m)}


def _defines_something(package: str) -> bool:
    """Whether a package file holds code, not only its docstring."""
    body = ast.parse((ROOT / package).read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


@pytest.mark.parametrize("name", STAGES)
def test_code_deps_are_the_modules_the_stage_really_imports(name):
    declared = {dep for dep in paths(PIPELINE["stages"][name]["deps"]) if dep.startswith("src/")}
    assert declared == code_closure(f"src/stages/{name}.py") - LOGGING_ONLY


def test_evaluate_builds_its_batches_without_the_training_code():
    imported = code_closure("src/stages/evaluate.py")
    for module in ("loop", "caching", "resume", "optimization", "plan"):
        assert f"src/finetune/training/{module}.py" not in imported
