"""Named recipes: valid params on top of params.yaml, turned into `dvc exp run -S` arguments."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from src.finetune.errors import PipelineError
from src.finetune.model.backbones import BACKBONES
from src.finetune.params import apply_overrides, check_params, read_yaml
from src.recipes import load_recipe, set_arguments
from tests.support.params import ROOT, committed_params


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """The project's recipes on its committed params.yaml, whatever the workspace's says."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    (tmp_path / "params.yaml").write_text(committed_params())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_strong_recipe_turns_on_every_technique_it_documents(in_project):
    recipe = load_recipe("strong")
    params = check_params(
        apply_overrides(read_yaml(in_project / "params.yaml"), recipe), where=in_project
    )
    assert params.augment.flip and params.augment.crop_pad == 4
    for phase in (params.phase1, params.phase2):
        assert (phase.optimizer, phase.schedule, phase.label_smoothing) == ("adamw", "cosine", 0.1)
        assert phase.weight_decay > 0 and phase.warmup_epochs >= 1
    assert params.phase2.lr_decay < 1 and params.phase2.unfreeze_every > 0
    assert params.evaluate.tta > 0


def test_arguments_set_each_key_as_dvc_reads_them():
    arguments = set_arguments({"augment.flip": True, "phase2.lr": 1e-4, "data.test_limit": None})
    assert arguments == [
        "-S", "augment.flip=true", "-S", "phase2.lr=0.0001", "-S", "data.test_limit=null",
    ]  # fmt: skip


def test_a_recipe_with_a_bad_key_or_value_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(committed_params())
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes/typo.yaml").write_text("phase2.lrr: 0.001\n")
    (tmp_path / "recipes/bad.yaml").write_text("phase2.lr_decay: 2\n")
    with pytest.raises(PipelineError, match=r"recipes/typo.yaml: phase2.lrr: unknown key"):
        load_recipe("typo")
    with pytest.raises(PipelineError, match=r"phase2.lr_decay: input should be less than"):
        load_recipe("bad")
    with pytest.raises(PipelineError, match="recipes here: bad, typo"):
        load_recipe("absent")


def test_keys_that_are_no_dotted_names_of_sections_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(committed_params())
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes/deep.yaml").write_text("phase2.lr.x: 1\n")
    (tmp_path / "recipes/number.yaml").write_text("1: 2\n")
    with pytest.raises(PipelineError, match=r"deep.yaml: phase2.lr.x: phase2.lr is a value, not"):
        load_recipe("deep")
    with pytest.raises(PipelineError, match=r"number.yaml: 1: a key is a dotted name"):
        load_recipe("number")


def test_values_keep_their_type_and_spaces_as_dvc_reads_them():
    overrides = {"mlflow.registered_model": "my model", "mlflow.experiment": "123", "seed": 7}
    arguments = set_arguments(overrides)
    assert arguments[1::2] == [
        "mlflow.registered_model=my model",
        'mlflow.experiment="123"',
        "seed=7",
    ]
    for argument, value in zip(arguments[1::2], overrides.values(), strict=True):
        text = argument.split("=", 1)[1]
        assert YAML(typ="safe", pure=True).load(text) == value


def test_run_hands_dvc_each_value_as_one_argument(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(committed_params())
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes/named.yaml").write_text('mlflow.registered_model: "my model"\n')
    fake = tmp_path / "bin/dvc"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "src.recipes", "named", "--run"],
        cwd=tmp_path,
        env=os.environ | {"PATH": f"{fake.parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout.strip().splitlines()[-1])
    assert argv == ["exp", "run", "-n", "named-recipe", "-S", "mlflow.registered_model=my model"]


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml")))
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_recipe_fits_every_backbone(recipe, backbone, in_project):
    """A recipe says how much to unfreeze in a unit that means the same on each backbone."""
    weights = "none" if backbone == "tinynet" else "imagenet"
    overrides = load_recipe(recipe) | {"model.backbone": backbone, "model.weights": weights}
    tree = apply_overrides(read_yaml(in_project / "params.yaml"), overrides)
    params = check_params(tree, where=in_project)
    assert 1 <= params.unfrozen_layers() <= BACKBONES[backbone].layers
