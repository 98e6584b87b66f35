"""Every data source, prepared the same way: stratified, seeded splits on disk (see
``data.prepared``). A source is one module and one entry of ``SOURCES``: how to fetch its
images before anything is logged (a download, or nothing), and how to prepare them; the
params schema says which ``data`` keys it reads (``params.SOURCE_KEYS``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from src.finetune.data.archives import CIFAR10, CIFAR100, Archive
from src.finetune.data.sources import cifar, folder
from src.finetune.params import DataParams


@dataclass(frozen=True)
class Source:
    """A data source: ``fetch`` gets its images (raises PipelineError in one line), then
    ``prepare`` writes the splits to ``out`` and returns the number of images of each."""

    name: str
    fetch: Callable[[DataParams, Path], None]
    prepare: Callable[[DataParams, Path, np.random.Generator, Path], dict[str, int]]


def archive_source(name: str, official: Archive) -> Source:
    return Source(
        name, partial(cifar.fetch_archive, official), partial(cifar.prepare_archive, official)
    )


SOURCES = {
    source.name: source
    for source in (
        archive_source("cifar10", CIFAR10),
        archive_source("cifar100", CIFAR100),
        Source("folder", folder.fetch_nothing, folder.prepare_folder),
    )
}
