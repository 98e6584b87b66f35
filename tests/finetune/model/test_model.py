import json

import keras
import numpy as np
import pytest

from src.finetune.errors import PipelineError
from src.finetune.model.backbones import BACKBONES
from src.finetune.model.checkpoints import load_checkpoint, write_checkpoint
from src.finetune.model.network import (
    TRAINED_BATCHNORM_MOMENTUM,
    base_blocks,
    base_of,
    build_model,
    serving_model,
    set_trainable,
    training_groups,
)
from tests.support.bombs import peak_memory, write_zip_bomb
from tests.support.training import brief_train, fresh_model, tiny_split, unfreeze


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return fresh_model(dropout=0.3)


@pytest.fixture(scope="module")
def v2b0() -> keras.Model:
    """The default backbone's real network, for the tests of how its blocks are found."""
    return fresh_model(dropout=0.3, backbone="efficientnetv2b0")


def built(weights, image_size=32, backbone="tinynet"):
    return build_model(BACKBONES[backbone], weights, 0.3, image_size, (32, 32, 3), 10)


def test_head_sits_on_a_frozen_base(model):
    assert [layer.name for layer in model.layers] == [
        "image",
        "base",
        "avg_pool",
        "head_dropout",
        "probs",
    ]
    assert not base_of(model).trainable
    assert base_of(model).name == "tinynet"
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"probs"}
    assert model.get_layer("probs").activation.__name__ == "softmax"
    assert model.output_shape == (None, 10)


def test_inputs_are_resized_inside_the_model_when_asked():
    resized = built(None, image_size=48)
    assert resized.get_layer("resize").output.shape[1:3] == (48, 48)
    assert resized.input_shape == (None, 32, 32, 3)


def test_unfreeze_top_opens_the_last_layers_but_never_batchnorm(model):
    unfreeze(model, 8)
    layers = base_of(model).layers
    trainable = [layer for layer in layers if layer.trainable]
    assert trainable, "some of the last 8 layers must train"
    assert all(layer in layers[-8:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    expected = [
        layer for layer in layers[-8:] if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert trainable == expected
    unfreeze(model, 0)
    assert not any(layer.trainable for layer in layers)


def test_checkpoint_keeps_the_base_in_inference_mode_and_batchnorm_fixed(model, tmp_path):
    """After save and load, training steps leave BN statistics alone and the base output is
    deterministic even when the whole model is called in training mode (no stochastic depth)."""
    write_checkpoint(model, tmp_path / "phase1.keras", tuple("abcdefghij"))
    loaded = load_checkpoint(tmp_path / "phase1.keras", made_by="phase1_extract")
    unfreeze(loaded, 8)
    base = base_of(loaded)
    bn = next(
        layer for layer in base.layers[-8:] if isinstance(layer, keras.layers.BatchNormalization)
    )
    conv = next(layer for layer in base.layers[-8:] if layer.trainable and layer.weights)
    frozen = base.layers[2]  # the stem's convolution
    before = {
        "bn": bn.moving_mean.numpy().copy(),
        "conv": conv.weights[0].numpy().copy(),
        "frozen": frozen.weights[0].numpy().copy(),
    }
    split = tiny_split()
    brief_train(loaded, (split, split), phase="phase2", unfreeze_last=8)
    assert np.array_equal(bn.moving_mean.numpy(), before["bn"])
    assert np.array_equal(frozen.weights[0].numpy(), before["frozen"])
    assert not np.array_equal(conv.weights[0].numpy(), before["conv"])

    features = keras.Model(loaded.inputs, loaded.get_layer("avg_pool").output)
    x = split.images[:4].astype("float32")
    np.testing.assert_allclose(features(x, training=True), features(x, training=True))
    np.testing.assert_allclose(features(x, training=True), features(x, training=False), rtol=1e-5)


@pytest.mark.parametrize("cache", [False, True])
def test_train_batchnorm_lets_the_unfrozen_batchnorm_adapt_and_leaves_the_rest(
    model, tmp_path, cache
):
    """phase2.train_batchnorm: the BatchNormalization layers of the unfrozen range learn the
    new images' statistics, streamed or on the frozen part's cached outputs; those below stay
    as they were; the saved checkpoint runs in inference mode again."""
    write_checkpoint(model, tmp_path / "phase1.keras", tuple("abcdefghij"))
    loaded = load_checkpoint(tmp_path / "phase1.keras", made_by="phase1_extract")
    layers = base_of(loaded).layers
    batchnorms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    inside = [layer for layer in batchnorms if layer in layers[-8:]]
    below = [layer for layer in batchnorms if layer not in layers[-8:]]
    before = {layer.name: layer.moving_mean.numpy().copy() for layer in batchnorms}
    split = tiny_split()
    brief_train(loaded, (split, split), phase="phase2", unfreeze_last=8, train_batchnorm=True,
                cache=cache, cache_budget_gb=1.0)  # fmt: skip
    assert inside and all(layer.trainable for layer in inside)
    moved = [not np.array_equal(layer.moving_mean, before[layer.name]) for layer in inside]
    assert all(moved), "every unfrozen BatchNormalization learns the new statistics"
    assert all(np.array_equal(layer.moving_mean, before[layer.name]) for layer in below)
    # ...fast enough to follow them within a phase; the frozen ones keep Keras's momentum
    assert {layer.momentum for layer in inside} == {TRAINED_BATCHNORM_MOMENTUM}
    assert {layer.momentum for layer in below} == {0.99}

    write_checkpoint(loaded, tmp_path / "phase2.keras", tuple("abcdefghij"))
    again = load_checkpoint(tmp_path / "phase2.keras", made_by="phase2_finetune")
    features = keras.Model(again.inputs, again.get_layer("avg_pool").output)
    x = split.images[:4].astype("float32")
    np.testing.assert_allclose(features(x, training=True), features(x, training=False), rtol=1e-5)


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="run `dvc repro phase1_extract` first"):
        load_checkpoint(tmp_path / "absent.keras", made_by="phase1_extract")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="not a readable Keras checkpoint"):
        load_checkpoint(broken, made_by="phase1_extract")


def test_weights_file_that_is_not_weights_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.weights.h5"
    bogus.write_bytes(b"nonsense")
    with pytest.raises(PipelineError, match=r"model\.weights: .* is not a weights file"):
        built(str(bogus))


def test_weights_file_from_a_saved_base_is_loaded(model, tmp_path):
    path = tmp_path / "base.weights.h5"
    base_of(model).save_weights(path)
    rebuilt = built(str(path))
    for ours, theirs in zip(base_of(rebuilt).weights, base_of(model).weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_offline_imagenet_download_is_a_clear_error(monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", no_network)
    with pytest.raises(
        PipelineError, match=r"copy efficientnetv2-b0_notop\.h5 into ~/\.keras/models/"
    ):
        built("imagenet", backbone="efficientnetv2b0")


def test_serving_model_has_the_same_weights_and_only_standard_layers(model, tmp_path):
    served = serving_model(model)
    x = tiny_split(n=4).images.astype("float32")
    np.testing.assert_allclose(served(x), model(x), rtol=1e-6)
    served.save(tmp_path / "served.keras")
    assert "InferenceMode" not in json.dumps(served.get_config())
    with keras.saving.custom_object_scope({}):
        reloaded = keras.saving.load_model(tmp_path / "served.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded(x), model(x), rtol=1e-5)


def test_blocks_are_the_stages_of_the_base_from_the_top_down(v2b0):
    model = v2b0
    blocks = base_blocks(model)
    assert [b.name for b in blocks] == [f"block{i}" for i in range(6, 0, -1)] + ["stem"]
    assert [layer.name for layer in blocks[0].layers[-3:]] == [
        "top_conv",
        "top_bn",
        "top_activation",
    ]
    assert blocks[-1].layers[0].name.startswith("input_layer"), "preprocessing joins the stem"
    assert {b.name: len(b.layers) for b in blocks}["block5"] == 73
    assert sum(len(b.layers) for b in blocks) == len(base_of(model).layers)
    for block in blocks[1:6]:
        assert all(layer.name.startswith(block.name) for layer in block.layers)


def test_groups_cover_the_unfrozen_range_block_by_block_with_the_head_on_top(v2b0):
    model = v2b0
    (head,) = training_groups(model, None)
    assert [layer.name for layer in head.layers] == ["avg_pool", "head_dropout", "probs"]
    assert [g.name for g in training_groups(model, 40)] == ["block6"]
    groups = training_groups(model, 121 + 73 + 10)  # block6 and top, block5, 10 of block4
    assert [g.name for g in groups] == ["block6", "block5", "block4"]
    assert groups[0].layers[:3] == head.layers
    assert [len(g.layers) for g in groups] == [3 + 121, 73, 10]
    assert list(groups[2].layers) == base_of(model).layers[-204:-194]


def test_set_trainable_trains_the_groups_and_the_head_never_batchnorm(v2b0):
    model = v2b0
    groups = training_groups(model, 121 + 73)
    set_trainable(model, groups[:1])
    trainable = {layer.name for layer in base_of(model).layers if layer.trainable}
    assert trainable and all(name.startswith(("block6", "top_")) for name in trainable)
    assert not any("_bn" in name for name in trainable)
    set_trainable(model, groups)
    assert any(layer.trainable for layer in groups[1].layers)
    assert model.get_layer("probs").trainable
    unfreeze(model, 0)
    assert not any(layer.trainable for layer in base_of(model).layers)


def test_a_checkpoint_whose_config_inflates_far_is_refused_before_it_is_read(tmp_path):
    """300 MB of config in a 300 KB file: Keras would read it whole before its error."""
    bomb = write_zip_bomb(
        tmp_path / "phase1.keras",
        "config.json",
        300_000_000,
        others={"metadata.json": b"{}", "model.weights.h5": b"\x89HDF"},
    )
    with peak_memory() as peak, pytest.raises(PipelineError) as refused:
        load_checkpoint(bomb, made_by="phase1_extract")
    assert peak.bytes < 200_000_000, f"{peak.bytes / 1e6:.0f} MB taken to refuse it"
    assert str(refused.value) == (
        f"{bomb}: config.json inflates to 300 MB, more than the 16 MB it may hold; it was not "
        "read: run `dvc repro --force phase1_extract` to rebuild it"
    )
