from pathlib import Path

import pytest

from src.finetune.errors import PipelineError
from src.finetune.params import Params, apply_overrides, load_params, read_yaml
from src.finetune.params import write_params as write_tree
from tests.support.params import project_params, write_params


def error_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_project_params_are_valid_and_keep_the_documented_defaults():
    params = project_params()
    assert params.seed == 42
    assert params.data.val_split == 0.1
    assert params.data.train_limit is None
    assert params.model.weights == "imagenet"
    assert (params.phase1.epochs, params.phase1.lr, params.phase1.batch_size) == (15, 1e-3, 64)
    assert (params.phase2.epochs, params.phase2.unfreeze_last, params.phase2.lr) == (10, 40, 1e-5)
    assert params.mlflow.experiment == "auto" and params.mlflow_experiment == "cifar10-finetune"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"data.source": "cifar100"}, "cifar100-finetune"),
        ({"data.source": "folder", "data.folder": "data/sample/digits"}, "digits-finetune"),
        ({"data.source": "folder", "data.folder": "photos/"}, "photos-finetune"),
        ({"data.source": "folder", "mlflow.experiment": "mine"}, "mine"),
    ],
)
def test_the_mlflow_experiment_is_named_after_the_data_unless_set(overrides, expected):
    tree = apply_overrides(project_params().model_dump(), overrides)
    assert Params.model_validate(tree).mlflow_experiment == expected


def test_flat_uses_dotted_keys_and_select_takes_sections_or_keys():
    params = project_params()
    flat = params.flat()
    assert flat["phase2.lr"] == 1e-5 and flat["data.train_limit"] is None
    assert set(params.select(("seed", "phase2"))) == {"seed"} | {
        f"phase2.{key}"
        for key in (
            "epochs", "lr", "batch_size", "optimizer", "weight_decay", "schedule",
            "warmup_epochs", "label_smoothing", "early_stopping", "ema", "unfreeze_last",
            "lr_decay", "unfreeze_every", "train_batchnorm",
        )
    }  # fmt: skip


@pytest.mark.parametrize(
    ("backbone", "unfreeze_last", "layers"),
    [
        ("efficientnetv2b0", 40, 40),
        ("efficientnetv2b0", 1.0, 270),
        ("efficientnetlite0", 1.0, 151),
        ("efficientnetlite0", 0.5, 76),
        ("efficientnetlite0", 0.001, 1),
        ("efficientnetlite2", 0.25, 50),
    ],
)
def test_unfreeze_last_is_layers_or_a_fraction_of_the_backbones(
    tmp_path, backbone, unfreeze_last, layers
):
    overrides = {"model.backbone": backbone, "phase2.unfreeze_last": unfreeze_last}
    params = load_params(write_params(tmp_path / "params.yaml", overrides))
    assert params.unfrozen_layers() == layers
    assert params.finetuned_part() == (
        f"the head and the last {layers} layers of the base, BatchNorm frozen"
    )


def test_a_count_above_the_backbones_layers_suggests_a_fraction_that_fits_every_one(tmp_path):
    overrides = {"model.backbone": "efficientnetlite0", "phase2.unfreeze_last": 237}
    with pytest.raises(PipelineError) as caught:
        load_params(write_params(tmp_path / "params.yaml", overrides))
    assert str(caught.value).endswith(
        "phase2.unfreeze_last: 237 is more than the 151 layers of efficientnetlite0; use "
        "0..151, or a fraction of them such as 0.88 (1.0 = all) that fits every backbone"
    )


def test_without_mirror_images_tta_has_four_shifted_views(tmp_path):
    overrides = {"evaluate.tta": 5, "evaluate.tta_flip": False}
    with pytest.raises(PipelineError) as caught:
        load_params(write_params(tmp_path / "params.yaml", overrides))
    assert str(caught.value).endswith(
        "evaluate.tta: 5 views without mirror images (tta_flip: false); there are 4 shifted "
        "ones, use 0..4"
    )
    load_params(write_params(tmp_path / "params.yaml", overrides | {"evaluate.tta": 4}))


def test_exponent_without_a_dot_is_a_float_as_dvc_writes_it(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    path.write_text(path.read_text().replace("lr: 1.0e-05", "lr: 1e-4"))
    assert load_params(path).phase2.lr == 1e-4


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("phase1.epochs", 0, "phase1.epochs: input should be greater than or equal to 1, got 0"),
        ("phase2.lr", 0.0, "phase2.lr: input should be greater than 0"),
        ("phase2.lr", -1e-3, "phase2.lr: input should be greater than 0"),
        ("data.val_split", 1.0, "data.val_split: input should be less than 1"),
        ("data.val_split", 0, "data.val_split: input should be greater than 0"),
        ("phase2.unfreeze_last", 271, "271 is more than the 270 layers of efficientnetv2b0"),
        ("model.backbone", "vgg16", "model.backbone: unknown backbone 'vgg16'; use one of "),
        ("data.source", "mnist", "data.source: input should be 'cifar10', 'cifar100' or 'folder'"),
        ("data.test_split", 1.0, "data.test_split: input should be less than 1"),
        ("phase1.epochs", "ten", "phase1.epochs: input should be a valid integer, got 'ten'"),
        ("phase1.batch_size", 32.5, "phase1.batch_size: input should be a valid integer"),
        ("model.dropout", 1.0, "model.dropout: input should be less than 1"),
        ("model.weights", "missing.h5", "model.weights: expected imagenet, none or the path"),
        ("data.sha256", "abc", "data.sha256: string should match pattern"),
        ("data.train_limit", 0, "data.train_limit: input should be greater than or equal to 1"),
        ("augment.crop_pad", 17, "augment.crop_pad: input should be less than or equal to 16"),
        ("augment.rotation", 0.6, "augment.rotation: input should be less than or equal to 0.5"),
        ("augment.randaugment", 10, "augment.randaugment: input should be less than or equal to 9"),
        ("augment.mixup", -0.1, "augment.mixup: input should be greater than or equal to 0"),
        ("augment.cutmix", 2.0, "augment.cutmix: input should be less than or equal to 1"),
        ("augment.flip", "yes", "augment.flip: input should be a valid boolean, got 'yes'"),
        ("phase1.optimizer", "rmsprop", "phase1.optimizer: input should be 'adam', 'adamw' or"),
        ("phase2.schedule", "linear", "phase2.schedule: input should be 'constant' or 'cosine'"),
        ("phase2.label_smoothing", 1.0, "phase2.label_smoothing: input should be less than 1"),
        ("phase1.early_stopping", -1, "phase1.early_stopping: input should be greater than or"),
        ("phase2.lr_decay", 0.0, "phase2.lr_decay: input should be greater than 0"),
        ("phase2.lr_decay", 1.5, "phase2.lr_decay: input should be less than or equal to 1"),
        ("phase2.unfreeze_every", -2, "phase2.unfreeze_every: input should be greater than or"),
        ("evaluate.tta", 9, "evaluate.tta: input should be less than or equal to 8"),
        ("evaluate.classical", "svm", "evaluate.classical: input should be 'svc', 'logistic'"),
        ("evaluate.classical_images", 0, "evaluate.classical_images: input should be greater"),
        ("phase2.unfreeze_last", 1.5, "phase2.unfreeze_last: 1.5 is neither a number of layers"),
        ("phase2.unfreeze_last", -3, "phase2.unfreeze_last: -3 is neither a number of layers"),
        ("phase2.unfreeze_last", 0.0, "phase2.unfreeze_last: 0.0 is neither a number of layers"),
        ("phase2.train_batchnorm", "yes", "phase2.train_batchnorm: input should be a valid bool"),
        ("train.deterministic", "auto", "train.deterministic: input should be a valid boolean"),
        ("train.cached_views", -1, "train.cached_views: input should be greater than or equal"),
        ("phase1.warmup_epochs", 15, "phase1.warmup_epochs: 15 must be fewer than the phase's"),
        ("seed", 2**32, "seed: input should be less than 4294967296, got 4294967296"),
        ("phase1.epochs", 10**9, "phase1.epochs: input should be less than or equal to 10000"),
        ("phase2.batch_size", 10**6, "phase2.batch_size: input should be less than or equal to"),
        ("phase2.lr", float("inf"), "phase2.lr: input should be a finite number, got inf"),
        ("mlflow.registered_model", "team/model", "mlflow.registered_model: string should match"),
        ("mlflow.experiment", "x" * 501, "mlflow.experiment: string should have at most 500"),
        ("train.worker_timeout_s", 0, "train.worker_timeout_s: input should be greater than or"),
        ("phase2.lr", "1" * 5000, "phase2.lr: input should be a valid number, got '1111"),
        ("evaluate", None, "evaluate: input should be a valid dictionary, got None"),
        ("train.mixed_precision", "yes", "train.mixed_precision: input should be 'auto', true or"),
        ("data.folder", "a\0b", "data.folder: string should match pattern"),
        ("data.archive", "a" * 5000, "data.archive: string should have at most 4096 characters"),
        ("model.weights", "a" * 300, "model.weights: expected imagenet, none or the path"),
    ],
)
def test_bad_values_name_the_key_what_it_got_and_what_is_allowed(tmp_path, key, value, expected):
    path = write_params(tmp_path / "params.yaml", {key: value})
    with pytest.raises(PipelineError, match=None) as caught:
        load_params(path)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_unknown_key_is_a_typo_with_the_allowed_keys_listed(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    path.write_text(path.read_text().replace("  lr: 1.0e-05", "  lrr: 1.0e-05"))
    message = error_for(tmp_path, path.read_text())
    assert "phase2.lrr: unknown key; did you mean lr?" in message
    assert "allowed here: epochs, lr, batch_size, optimizer, weight_decay, schedule" in message


def test_unknown_top_level_section(tmp_path):
    text = write_params(tmp_path / "params.yaml").read_text() + "optimiser: sgd\n"
    assert "optimiser: unknown key" in error_for(tmp_path, text)


def test_missing_key(tmp_path):
    text = write_params(tmp_path / "params.yaml").read_text().replace("  dropout: 0.3", "")
    assert "model.dropout: missing key" in error_for(tmp_path, text)


def test_malformed_yaml_names_the_line(tmp_path):
    message = error_for(tmp_path, "seed: 42\ndata: [unclosed\n")
    assert "malformed YAML" in message and "line" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("seed: 42\n".encode("utf-16"), "byte 0 is not UTF-8 text; save the file as UTF-8"),
        (b"seed: " + b"9" * 5000 + b"\n", "a value YAML cannot read"),
        (b"seed: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "a value YAML cannot read"),
        (b"seed: " + b"[" * 10_000 + b"\n", "a value YAML cannot read"),
    ],
)
def test_a_file_yaml_cannot_read_is_one_line(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(PipelineError, match=None) as caught:
        load_params(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_not_a_mapping(tmp_path):
    assert "expected a mapping" in error_for(tmp_path, "- a\n- b\n")


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_weights_may_be_an_existing_file(tmp_path):
    weights = tmp_path / "base.weights.h5"
    weights.write_bytes(b"")
    path = write_params(tmp_path / "params.yaml", {"model.weights": str(weights)})
    assert load_params(path).model.keras_weights == str(weights)
    path = write_params(tmp_path / "params.yaml", {"model.weights": "none"})
    assert load_params(path).model.keras_weights is None


def test_under_dvc_exp_run_a_refusal_says_how_to_put_params_yaml_back(tmp_path, monkeypatch):
    path = write_params(tmp_path / "params.yaml", {"phase2.lr": -1.0})
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    with pytest.raises(PipelineError) as plain:
        load_params(path)
    assert "git checkout" not in str(plain.value)
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    assert str(caught.value) == (
        f"{plain.value!s}; `dvc exp run -S` left this value in {path}: `git checkout "
        f"{path}` puts the committed file back"
    )


def test_params_written_for_a_run_keep_the_files_comments(tmp_path):
    """What the demo and the tuner write into their workspaces, which `dvc exp apply` brings
    back to the user: the documented file, not a bare one."""
    path = write_params(tmp_path / "params.yaml")
    tree = apply_overrides(read_yaml(path, keep_comments=True), {"phase2.lr": 3e-4})
    written = tmp_path / "written.yaml"
    write_tree(written, tree)
    text = written.read_text()
    assert "# peak learning rate; keep it small, the base is pre-trained" in text
    assert load_params(written).phase2.lr == 3e-4
    assert text.count("\n#") == path.read_text().count("\n#")
