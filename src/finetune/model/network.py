"""A pre-trained base with a new classification head, and what trains in each phase."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from src.finetune.errors import PipelineError
from src.finetune.model import efficientnet_lite, tiny
from src.finetune.model.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, Backbone

BASE_NAME = "base"
RESIZE_NAME = "resize"
HEAD_NAMES = ("avg_pool", "head_dropout", "probs")
# The moving statistics of a BatchNormalization layer that trains, as PyTorch's default (0.1
# there) and timm use: Keras's 0.99 keeps a third of the old statistics after a hundred
# steps, so a phase of a few hundred steps ends with inference statistics that are not the
# batches' it trained on (from scratch on the digits, train accuracy 0.98 and validation at
# chance after 170 steps).
TRAINED_BATCHNORM_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="finetune")
class InferenceMode(keras.layers.Wrapper):
    """Runs the wrapped model in inference mode, whatever mode the outer model runs in, until
    ``follow_training`` lets BatchNormalization train (``phase2.train_batchnorm``).

    ``base(x, training=False)`` alone does not do this in Keras 3: a functional model hands
    its own ``training`` flag to every layer it replays, overriding the one given when the
    graph was built, so during ``fit`` the base's stochastic-depth dropout would be active.
    This layer drops the flag it is handed, so nothing overrides it. With
    ``follow_training`` it hands the flag on: the trainable BatchNormalization layers then
    normalise with each batch's statistics and update their moving ones, and stochastic
    depth is active, as in the base's own training; frozen BatchNormalization layers still
    run in inference mode (Keras runs a non-trainable one so). The switch is not saved: a
    checkpoint loaded for evaluation or serving always runs in inference mode.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self.follow_training = False

    def call(self, inputs, training=None):
        return self.layer(inputs, training=bool(training) and self.follow_training)

    def compute_output_spec(self, inputs, training=None):
        return self.layer.compute_output_spec(inputs)


def build_model(
    backbone: Backbone,
    weights: str | None,
    dropout: float,
    image_size: int,
    input_shape: tuple[int, int, int],
    classes: int,
) -> keras.Model:
    """Frozen base -> GlobalAveragePooling2D -> Dropout -> Dense softmax, on raw 0-255 pixels.

    Images of ``input_shape`` are resized to ``image_size`` inside the model, and given the
    preprocessing the base expects where it has none of its own (see ``backbones``), so
    nothing outside the model normalises them. The base always runs in inference mode (see
    ``InferenceMode``): its BatchNormalization statistics and its stochastic-depth dropout
    stay fixed in both phases, even once layers are unfrozen, as the Keras transfer-learning
    guide recommends.
    """
    base = _load_base(backbone, weights, (image_size, image_size, input_shape[2]))
    base.trainable = False

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if image_size != input_shape[0] or image_size != input_shape[1]:
        x = keras.layers.Resizing(image_size, image_size, name=RESIZE_NAME)(x)
    for layer in preprocessing_layers(backbone):
        x = layer(x)
    x = InferenceMode(base, name=BASE_NAME)(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_classifier")


def build_base(
    backbone: Backbone, weights: str | None, input_shape: tuple[int, ...]
) -> keras.Model:
    """The network without its top; raises what its builder raises."""
    if backbone.family == "lite":
        return efficientnet_lite.base(backbone.constructor, weights, input_shape)
    if backbone.family == "tiny":
        return tiny.base(weights, input_shape)
    constructor = getattr(keras.applications, backbone.constructor)
    return constructor(include_top=False, weights=weights, input_shape=input_shape)


def preprocessing_layers(backbone: Backbone) -> list[keras.layers.Layer]:
    """Layers that give the base the pixels it was trained on, where it lacks them."""

    if backbone.preprocessing == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if backbone.preprocessing == "torch":
        return [
            keras.layers.Rescaling(1 / 255.0, name="preprocess_scale"),
            keras.layers.Normalization(
                mean=IMAGENET_MEAN,
                variance=[s**2 for s in IMAGENET_STD],
                name="preprocess_normalize",
            ),
        ]
    return []


def _load_base(backbone: Backbone, weights: str | None, size: tuple[int, int, int]) -> keras.Model:
    try:
        return build_base(backbone, weights, size)
    except PipelineError:
        raise
    except (ValueError, OSError) as error:
        if weights not in ("imagenet", None):
            raise PipelineError(
                f"model.weights: {weights} is not a weights file for {backbone.title} "
                f"without top ({error}); use imagenet, none or a matching .h5/.weights.h5 file"
            ) from None
        raise
    except Exception as error:  # keras.utils.get_file wraps network failures in a bare Exception
        if weights != "imagenet":
            raise
        raise PipelineError(
            f"cannot download the ImageNet weights of {backbone.title} ({error}); on a machine "
            f"without network, copy {backbone.weights_file} into ~/.keras/models/, or set "
            "model.weights to a local weights file or to none"
        ) from None


def backbone_of(model: keras.Model) -> Backbone:
    """The backbone a model was built on, from the name its base carries."""
    name = base_of(model).name
    found = next((b for b in BACKBONES.values() if b.keras_name == name), None)
    if found is None:
        raise PipelineError(
            f"the model's base is {name!r}, not one of this pipeline's backbones; use a "
            "checkpoint the pipeline wrote"
        )
    return found


def base_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BASE_NAME).layer


def serving_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the ``InferenceMode`` wrapper, for serving.

    The wrapper only matters during training; without it, a saved model holds nothing but
    standard Keras layers, so the MLflow model and the exports load it without this package.
    """
    inputs, x = image_input(model)
    return keras.Model(
        inputs, apply_head(model, base_of(model)(x, training=False)), name=model.name
    )


def image_input(model: keras.Model) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """A new image input and what the base gets of it: after ``model``'s resizing and
    preprocessing, the layers between its input and its base."""
    inputs = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    names = [layer.name for layer in model.layers]
    x = inputs
    for layer in model.layers[1 : names.index(BASE_NAME)]:
        x = layer(x)
    return inputs, x


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
    """The base's blocks from the top down: EfficientNetV2B0's block6 (with the top
    convolution), block5, ... block1, stem (with the preprocessing). Layers whose names match
    no block belong to the block before them, or, in front, to the first."""
    backbone = backbone_of(model)
    names: list[str] = []
    members: dict[str, list[keras.layers.Layer]] = {}
    pending: list[keras.layers.Layer] = []  # leading layers that match no block yet
    for layer in base_of(model).layers:
        block = backbone.block_of(layer.name)
        if block is None and not names:
            pending.append(layer)
            continue
        name = block or names[-1]
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


def set_trainable(model: keras.Model, groups: list[Block], train_batchnorm: bool = False) -> None:
    """Train exactly the layers of ``groups`` (the head always); BatchNormalization among
    them only with ``train_batchnorm``.

    By default BatchNormalization layers stay frozen: with ``trainable=False`` Keras runs
    them in inference mode, so a small learning rate cannot wreck their ImageNet statistics.
    With ``train_batchnorm`` those of the groups train too, their statistics following the
    new images (see ``InferenceMode``), with the momentum ``TRAINED_BATCHNORM_MOMENTUM``.
    """
    training = {id(layer) for group in groups for layer in group.layers}
    base = base_of(model)
    base.trainable = True
    for layer in base.layers:
        batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = id(layer) in training and (train_batchnorm or not batchnorm)
        if batchnorm and layer.trainable:
            layer.momentum = TRAINED_BATCHNORM_MOMENTUM
    model.get_layer(BASE_NAME).follow_training = train_batchnorm
    for name in HEAD_NAMES:
        model.get_layer(name).trainable = True
