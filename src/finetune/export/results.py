"""``reports/export.json``: what the export stage measured, as the report and the model card
read it (kept apart from the runtimes, so reading it loads no model code)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from src.finetune.numbers import Amount, Fraction, Positive


class Checked(BaseModel):
    """One model as ``reports/export.json`` records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    path: str
    size_mb: Amount
    accuracy: Fraction
    agreement: Fraction  # with the Keras model's predicted classes
    latency_ms_batch1: Amount  # per image
    latency_ms_batch32: Amount  # per image
    seconds: Amount = 0.0  # to export it


class ExportReport(BaseModel):
    """``reports/export.json``: the Keras model the exports came from, each export, and the
    formats that failed with why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_images: Positive
    keras: Checked
    exports: list[Checked]
    failed: dict[str, str] = {}
    warnings: list[str] = []
