"""The transfer-learning recipe users copy from tutorials: the reference the pipeline is timed
against. Whole numpy arrays in memory, ``model.fit`` with batch 32, the frozen base run on
every image in every epoch; phase 2 unfreezes the top of the base and continues.

    python -m benchmarks.recipe --data data/prepared --phase 1 --model recipe.keras ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np

BATCH_SIZE = 32


def load(data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data / f"{name}.npz") as arrays:
        images = arrays["images"].astype("float32")  # the whole split as float32, as tutorials do
        return images, keras.utils.to_categorical(arrays["labels"], 10)


def augmentation(pad: int | None) -> list[keras.layers.Layer]:
    """Flips and shifts of up to ``pad`` pixels, as the keras.io guides add them: layers of
    the model, active in training only."""
    if pad is None:
        return []
    return [
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomTranslation(pad / 32, pad / 32, fill_mode="constant"),
    ]


def phase1(weights: str | None, dropout: float, lr: float, pad: int | None) -> keras.Model:
    base = keras.applications.EfficientNetV2B0(
        include_top=False, weights=weights, input_shape=(32, 32, 3)
    )
    base.trainable = False
    inputs = keras.Input(shape=(32, 32, 3))
    x = inputs
    for layer in augmentation(pad):
        x = layer(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(lr), "categorical_crossentropy", metrics=["accuracy"])
    return model


def phase2(model: keras.Model, unfreeze_last: int, lr: float) -> keras.Model:
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    base.trainable = True
    for layer in base.layers[:-unfreeze_last]:
        layer.trainable = False
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(keras.optimizers.Adam(lr), "categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--phase", type=int, choices=(1, 2), required=True)
    parser.add_argument("--model", type=Path, required=True, help="phase 1 writes, phase 2 reads")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--initial-epoch", type=int, default=0)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--unfreeze-last", type=int, default=40)
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument(
        "--augment-pad", type=int, default=None, help="flip and crop after padding N px"
    )
    args = parser.parse_args()
    keras.utils.set_random_seed(42)
    x_train, y_train = load(args.data, "train")
    x_val, y_val = load(args.data, "val")
    if args.phase == 1:
        model = phase1(None, 0.3, args.lr, args.augment_pad)
    else:
        model = phase2(keras.saving.load_model(args.model), args.unfreeze_last, args.lr)
    history = model.fit(
        x_train,
        y_train,
        batch_size=BATCH_SIZE,
        epochs=args.initial_epoch + args.epochs,
        initial_epoch=args.initial_epoch,
        validation_data=(x_val, y_val),
        verbose=2,
    )
    if args.phase == 1:
        model.save(args.model)
    args.history.write_text(json.dumps(history.history))


if __name__ == "__main__":
    main()
