"""EfficientNetV2B0 with a new classification head, and the two phases' trainable settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras

from src.finetune.data import IMAGE_SHAPE, NUM_CLASSES
from src.finetune.errors import PipelineError
from src.finetune.files import atomic_path

BASE_NAME = "base"
RESIZE_NAME = "resize"
HEAD_NAMES = ("avg_pool", "head_dropout", "probs")
# A block is a stage of the base as its layer names show it: EfficientNetV2B0's stem, block1*
# ... block6*. Layers whose names match none (the preprocessing in front, the top convolution
# behind) belong to the block beside them: the stem, or the last block.
BLOCK_PATTERN = re.compile(r"^(stem|block\d+)")


@keras.saving.register_keras_serializable(package="finetune")
class InferenceMode(keras.layers.Wrapper):
    """Runs the wrapped model in inference mode, whatever mode the outer model runs in.

    ``base(x, training=False)`` alone does not do this in Keras 3: a functional model hands
    its own ``training`` flag to every layer it replays, overriding the one given when the
    graph was built, so during ``fit`` the base's stochastic-depth dropout would be active.
    This layer's ``call`` takes no ``training`` argument, so nothing overrides it.
    """

    def call(self, inputs):
        return self.layer(inputs, training=False)

    def compute_output_spec(self, inputs):
        return self.layer.compute_output_spec(inputs)


def build_model(weights: str | None, dropout: float, image_size: int) -> keras.Model:
    """Frozen base -> GlobalAveragePooling2D -> Dropout -> Dense softmax, on raw 0-255 pixels.

    The base rescales pixels itself (``include_preprocessing``), so inputs are not normalised
    here. It always runs in inference mode (see ``InferenceMode``): its BatchNormalization
    statistics and its stochastic-depth dropout stay fixed in both phases, even once layers
    are unfrozen, as the Keras transfer-learning guide recommends.
    """
    size = (image_size, image_size, IMAGE_SHAPE[2])
    base = _load_base(weights, size)
    base.trainable = False

    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = inputs
    if image_size != IMAGE_SHAPE[0]:
        x = keras.layers.Resizing(image_size, image_size, name=RESIZE_NAME)(x)
    x = InferenceMode(base, name=BASE_NAME)(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probs")(
        x
    )
    return keras.Model(inputs, outputs, name="cifar10_efficientnetv2b0")


def _load_base(weights: str | None, size: tuple[int, int, int]) -> keras.Model:
    try:
        return keras.applications.EfficientNetV2B0(
            include_top=False, weights=weights, input_shape=size
        )
    except (ValueError, OSError) as error:
        if weights not in ("imagenet", None):
            raise PipelineError(
                f"model.weights: {weights} is not a weights file for EfficientNetV2B0 "
                f"without top ({error}); use imagenet, none or a matching .h5/.weights.h5 file"
            ) from None
        raise
    except Exception as error:  # keras.utils.get_file wraps network failures in a bare Exception
        if weights != "imagenet":
            raise
        raise PipelineError(
            f"cannot download the ImageNet weights ({error}); on a machine without network, "
            "copy efficientnetv2-b0_notop.h5 into ~/.keras/models/, or set model.weights to "
            "a local weights file or to none"
        ) from None


def base_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BASE_NAME).layer


def serving_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the ``InferenceMode`` wrapper, for serving.

    The wrapper only matters during training; without it, a saved model holds nothing but
    standard Keras layers, so ``mlflow.keras.load_model`` loads it without this package.
    """
    inputs, x = image_input(model)
    return keras.Model(
        inputs, apply_head(model, base_of(model)(x, training=False)), name=model.name
    )


def image_input(model: keras.Model) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """A new image input and, after ``model``'s resizing if it has one, what the base gets."""
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    resize = resize_layer(model)
    return inputs, inputs if resize is None else resize(inputs)


def resize_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The layer resizing images to ``data.image_size``; None when they stay 32x32."""
    return next((layer for layer in model.layers if layer.name == RESIZE_NAME), None)


def apply_head(model: keras.Model, features: keras.KerasTensor) -> keras.KerasTensor:
    """``model``'s own head layers (shared, not copied) applied to the base's output."""
    for name in HEAD_NAMES:
        features = model.get_layer(name)(features)
    return features


@dataclass(frozen=True)
class Block:
    """Consecutive layers of the base that train, or stay frozen, together."""

    name: str
    layers: tuple[keras.layers.Layer, ...]


def base_blocks(model: keras.Model) -> list[Block]:
    """The base's blocks from the top down: block6 (with the top convolution), block5, ..."""
    names: list[str] = []
    members: dict[str, list[keras.layers.Layer]] = {}
    pending: list[keras.layers.Layer] = []  # leading layers that match no block yet
    for layer in base_of(model).layers:
        match = BLOCK_PATTERN.match(layer.name)
        if match is None and not names:
            pending.append(layer)
            continue
        name = match.group(1) if match else names[-1]
        if name not in members:
            names.append(name)
            members[name] = []
        members[name] += [*pending, layer]
        pending = []
    return [Block(name, tuple(members[name])) for name in reversed(names)]


def training_groups(model: keras.Model, unfreeze_last: int | None) -> list[Block]:
    """What trains in a phase, from the top down, one group per block.

    The first group is the head with the top block of the unfrozen range; each block below it
    in the range is a group of its own. ``unfreeze_last`` counts base layers from the top, so
    a block it cuts through contributes only its upper layers. None: the head alone (phase 1).
    """
    head = tuple(model.get_layer(name) for name in HEAD_NAMES)
    if not unfreeze_last:
        return [Block("head", head)]
    unfrozen = {id(layer) for layer in base_of(model).layers[-unfreeze_last:]}
    groups = []
    for block in base_blocks(model):
        layers = tuple(layer for layer in block.layers if id(layer) in unfrozen)
        if layers:
            groups.append(Block(block.name, layers))
    top = groups[0]
    return [Block(top.name, head + top.layers), *groups[1:]]


def set_trainable(model: keras.Model, groups: list[Block]) -> None:
    """Train exactly the layers of ``groups`` (the head always), never BatchNormalization.

    BatchNormalization layers stay frozen: with ``trainable=False`` Keras runs them in
    inference mode, so a small learning rate cannot wreck their ImageNet statistics.
    """
    training = {id(layer) for group in groups for layer in group.layers}
    base = base_of(model)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = id(layer) in training and not isinstance(
            layer, keras.layers.BatchNormalization
        )
    for name in HEAD_NAMES:
        model.get_layer(name).trainable = True


def unfreeze_top(model: keras.Model, count: int) -> None:
    """Train the last ``count`` layers of the base and the head, BatchNormalization excluded."""
    set_trainable(model, training_groups(model, count))


def save_model(model: keras.Model, path: Path) -> None:
    """Write the network without optimizer state, whichever part of it was compiled.

    A twin that shares every layer but was never compiled: the checkpoint holds the same
    weights whether the phase trained the whole model (streamed) or a part of it (cached).
    """
    twin = keras.Model(model.inputs, model.outputs, name=model.name)
    with atomic_path(path) as partial:
        twin.save(partial)


def load_checkpoint(path: Path, rerun: str) -> keras.Model:
    """Load a ``.keras`` checkpoint in Keras safe mode (no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro {rerun}` first")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        reason = " ".join(str(error).split())
        if "safe_mode" in reason:
            raise PipelineError(
                f"{path} holds code (a Lambda layer) that Keras safe mode will not run; this "
                f"pipeline never writes one, so do not trust the file: run "
                f"`dvc repro --force {rerun}` to rebuild it"
            ) from None
        raise PipelineError(
            f"{path} is not a readable Keras checkpoint ({type(error).__name__}: "
            f"{reason[:300]}); run `dvc repro --force {rerun}` to rebuild it"
        ) from None
