"""Checkpoints between stages: written without optimizer state, loaded in Keras safe mode,
checked against the params and data they must have been made for."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import keras
import numpy as np

from src.finetune.environment import rerun
from src.finetune.errors import PipelineError
from src.finetune.files import LARGE_MEMBER, bounded_zip
from src.finetune.model import labels
from src.finetune.model.network import backbone_of


def write_checkpoint(model: keras.Model, path: Path, class_names: tuple[str, ...]) -> None:
    """The network without optimizer state, whichever part of it was compiled, and the class
    names of its outputs (see ``labels``).

    A twin that shares every layer but was never compiled: the checkpoint holds the same
    weights whether the phase trained the whole model (streamed) or a part of it (cached).
    The caller writes it to a temporary path and renames it with the phase's other outputs.
    """
    keras.Model(model.inputs, model.outputs, name=model.name).save(path)
    labels.add_to_archive(path, class_names)


def weights_digest(model: keras.Model) -> str:
    """A short fingerprint of every weight: workers that trained together print the same."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]


def check_checkpoint(
    model: keras.Model,
    path: Path,
    backbone: str,
    image_shape: tuple[int, ...],
    class_names: tuple[str, ...],
) -> None:
    """Stop with one line when a readable checkpoint was not made for these params and the
    prepared data (its image shape, its classes and their names)."""
    classes = len(class_names)
    expected = (backbone, tuple(image_shape), classes)
    inputs, outputs = tuple(model.inputs[0].shape[1:]), model.outputs[0].shape[-1]
    try:
        built_on = backbone_of(model).name
        holds = f"a {built_on} model for {outputs} classes of {inputs} images"
    except (PipelineError, ValueError):
        built_on, holds = None, "a model this pipeline did not build"
    if (built_on, inputs, outputs) != expected:
        raise PipelineError(
            f"{path} holds {holds}, not the {backbone} model for the {classes} classes of "
            f"{tuple(image_shape)} images prepared here; run {rerun(force=True)} to rebuild it"
        )
    names = labels.read_from_archive(path, f"run {rerun(force=True)} to rebuild it")
    if names is None:
        raise PipelineError(
            f"{path} holds no class names (written before they travelled with the model); "
            f"run {rerun(force=True)} to rebuild it"
        )
    if names != tuple(class_names):
        raise PipelineError(
            f"{path} was trained on the classes {_listed(names)}, not on the classes "
            f"{_listed(class_names)} prepared here; run {rerun(force=True)} to rebuild it"
        )


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:5]) + (f" (+{len(names) - 5})" if len(names) > 5 else "")


def load_checkpoint(path: Path, made_by: str) -> keras.Model:
    """Load a ``.keras`` checkpoint in Keras safe mode (no arbitrary code from the file).

    Its members' sizes are checked first: Keras reads a config of any size whole (and its
    own guard starts at 4 GB), so a 1 MB file could take gigabytes before its error.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run {rerun(made_by)} first")
    if zipfile.is_zipfile(path):  # anything else is Keras's to name, as before
        limits = {labels.WEIGHTS_ENTRY: LARGE_MEMBER}
        with bounded_zip(path, f"run {rerun(made_by, force=True)} to rebuild it", limits):
            pass
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        reason = " ".join(str(error).split())
        if "safe_mode" in reason:
            raise PipelineError(
                f"{path} holds code (a Lambda layer) that Keras safe mode will not run; this "
                f"pipeline never writes one, so do not trust the file: run "
                f"{rerun(made_by, force=True)} to rebuild it"
            ) from None
        raise PipelineError(
            f"{path} is not a readable Keras checkpoint ({type(error).__name__}: "
            f"{reason[:300]}); run {rerun(made_by, force=True)} to rebuild it"
        ) from None
