"""Which run made which file: stage runs are tagged with the content hashes of what they
wrote; a later stage looks its inputs up by hash and links to the runs that produced them,
also when DVC reused those outputs from its cache and the producing stage did not run in
this execution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from src.finetune.files import content_hash

OUTPUT_TAG = "pipeline.output.{path}"
INPUT_TAG = "pipeline.input.{path}"


def _key(path: Path) -> str:
    return Path(path).as_posix()


def record_outputs(client: MlflowClient, run_id: str, paths: Sequence[Path]) -> None:
    tags = [RunTag(OUTPUT_TAG.format(path=_key(p)), content_hash(p)) for p in paths]
    client.log_batch(run_id, tags=tags)


def link_inputs(client: MlflowClient, run_id: str, paths: Sequence[Path]) -> None:
    experiment_id = client.get_run(run_id).info.experiment_id
    tags = []
    for path in paths:
        if producer := producer_of(client, experiment_id, path):
            tags.append(RunTag(INPUT_TAG.format(path=_key(path)), producer))
    if tags:
        client.log_batch(run_id, tags=tags)


def producer_of(client: MlflowClient, experiment_id: str, path: Path) -> str | None:
    """The latest run that wrote ``path`` with its present content, if any."""
    tag = OUTPUT_TAG.format(path=_key(path))
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tag}` = '{content_hash(path)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
