"""docs/architecture.md's table of packages is true: every package of src/ has its row, the
imports it lists are the code's, and every import points down the table."""

import ast
import re
from collections import defaultdict

import pytest

from tests.support.params import ROOT

DOC = ROOT / "docs/architecture.md"


def unit(module: str) -> str | None:
    """The package a module belongs to, as the table names it: ``tools``, ``stages``, or the
    library's ``data``, ``params``, ... (a module of ``src.finetune`` is one of its own)."""
    parts = module.split(".")
    if parts[0] != "src" or len(parts) < 2:
        return None
    if parts[1] == "stages":
        return "stages"
    if parts[1] != "finetune":
        return "tools"
    return parts[2] if len(parts) > 2 else None


def code_imports() -> dict[str, set[str]]:
    """Each package's imports of other packages of this project, read from the source."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / "src").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        here = unit(module)
        if here is None:
            continue
        graph[here]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "src.finetune":  # from src.finetune import environment
                    names = [f"src.finetune.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            graph[here] |= {unit(name) for name in names} - {None, here}
    return graph


def documented() -> list[tuple[str, set[str]]]:
    """The table's rows, top down: (package, the imports it lists)."""
    rows = []
    table = DOC.read_text().split("## The packages", 1)[1].split("\n\n")[2]
    for line in table.splitlines()[2:]:
        first, *_, last = [cell.strip() for cell in line.strip("|").split("|")]
        if first.startswith("`src/*.py`"):
            name = "tools"
        else:
            name = re.fullmatch(r"`src/(?:finetune/)?(\w+)(?:/|\.py)`", first).group(1)
        rows.append((name, set(re.findall(r"`(\w+)`", last))))
    return rows


def test_every_package_has_its_row():
    assert [name for name, _ in documented()] and {name for name, _ in documented()} == set(
        code_imports()
    )


@pytest.mark.parametrize("row", range(len(documented())), ids=[n for n, _ in documented()])
def test_each_row_lists_exactly_what_the_package_imports(row):
    name, listed = documented()[row]
    assert listed == code_imports()[name], f"{name}: the table says {sorted(listed)}"


def test_every_import_points_down_the_table():
    order = [name for name, _ in documented()]
    upward = [
        f"{name} imports {other}"
        for name, others in code_imports().items()
        for other in others
        if order.index(other) < order.index(name)
    ]
    assert upward == []


def test_the_librarys_docstring_names_every_package_of_it():
    import src.finetune

    named = set(re.findall(r"``(\w+)``", src.finetune.__doc__))
    packages = {path.stem if path.suffix else path.name
                for path in (ROOT / "src/finetune").iterdir()
                if (path.suffix == ".py" and path.stem != "__init__")
                or (path / "__init__.py").is_file()}  # fmt: skip
    assert packages <= named, f"not named: {sorted(packages - named)}"


def test_the_test_supports_docstring_names_every_module_of_it():
    import tests.support

    named = set(re.findall(r"``(\w+)``", tests.support.__doc__))
    modules = {path.stem for path in (ROOT / "tests/support").glob("*.py")} - {"__init__"}
    assert modules <= named, f"not named: {sorted(modules - named)}"
