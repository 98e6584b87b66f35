"""docs/quality.md shows the benchmarks' measured rows as they are: every line of the tables
that `bench-quality --table` and `bench-backbones --table` print from reports/quality.json
and reports/backbones.json is in the page, so a new run cannot leave the page behind."""

import json

from benchmarks import backbones, quality
from tests.support.params import ROOT

PAGE = (ROOT / "docs/quality.md").read_text()


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("|", "**", "`recipe:"))]


def missing_from_page(printed: str) -> list[str]:
    return [line for line in table_lines(printed) if line not in PAGE.splitlines()]


def test_every_quality_table_line_is_on_the_page():
    results = json.loads((ROOT / "reports/quality.json").read_text())
    printed = quality.markdown(results)
    assert len(table_lines(printed)) > 20
    assert missing_from_page(printed) == []


def test_the_backbone_table_is_on_the_page():
    measured = json.loads((ROOT / "reports/backbones.json").read_text())
    results = json.loads((ROOT / "reports/quality.json").read_text())
    printed = backbones.markdown(results, measured, "fashion-mnist-1000", "fashion")
    assert len(table_lines(printed)) >= 5
    assert missing_from_page(printed) == []


def test_a_changed_number_is_caught():
    results = json.loads((ROOT / "reports/quality.json").read_text())
    row = results["datasets"]["fashion-mnist-100"]["course"]
    for run in row["runs"]:
        run["finetuned_val_accuracy"] = 0.123
    assert any("0.123 ± 0.000" in line for line in missing_from_page(quality.markdown(results)))
