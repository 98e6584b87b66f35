"""The workers get the slowest test files first: every end-to-end file is among them, each
listed file exists, and the collection puts them ahead of the others, in their order."""

from types import SimpleNamespace

from tests.conftest import SLOWEST_FIRST, pytest_collection_modifyitems
from tests.support.params import ROOT


def test_every_end_to_end_file_is_listed_and_every_listed_file_exists():
    e2e = {str(p.relative_to(ROOT)) for p in (ROOT / "tests/e2e").glob("test_*.py")}
    assert e2e <= set(SLOWEST_FIRST), e2e - set(SLOWEST_FIRST)
    assert [path for path in SLOWEST_FIRST if not (ROOT / path).is_file()] == []


def test_the_slowest_files_come_first_in_their_order_and_the_others_keep_theirs():
    nodeids = [
        "tests/finetune/test_params.py::test_a",
        f"{SLOWEST_FIRST[1]}::test_b",
        "tests/tools/test_predict.py::test_c[1]",
        f"{SLOWEST_FIRST[0]}::test_d",
        "tests/finetune/test_params.py::test_e",
        f"{SLOWEST_FIRST[1]}::test_f",
    ]
    items = [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]
    pytest_collection_modifyitems(items)
    assert [item.nodeid.rsplit("::", 1)[1] for item in items] == [
        "test_d", "test_b", "test_f", "test_a", "test_c[1]", "test_e",
    ]  # fmt: skip
