"""The CPU recipe is defined once (recipes.py); the CLI's config spells the same settings."""

import pytest
import yaml
from conftest import REPO

from anomalib_adapted_moe.benchmark.zoo import BACKBONE, LAYERS, Settings
from anomalib_adapted_moe.recipes import CPU_RECIPE, cpu_recipe_model

CONFIG = REPO / "configs" / "model" / "adapted_moe_cpu_demo.yaml"
BENCHMARK_CONFIG = REPO / "configs" / "benchmark" / "adapted_moe_synthetic.yaml"


def test_the_cli_configs_spell_the_cpu_recipe() -> None:
    init_args = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
    assert {key: init_args[key] for key in CPU_RECIPE} == CPU_RECIPE
    benchmark = yaml.safe_load(BENCHMARK_CONFIG.read_text())["benchmark"]["model"]["init_args"]
    assert benchmark == init_args  # anomalib benchmark's model: the same settings, every one


def test_the_benchmark_uses_the_cpu_recipe() -> None:
    assert (CPU_RECIPE["backbone"], CPU_RECIPE["layers"]) == (BACKBONE, LAYERS)
    assert (Settings().weights, Settings().epochs) == (CPU_RECIPE["backbone_weights"], CPU_RECIPE["epochs"])


def test_cpu_recipe_model_takes_overrides_and_the_image_size() -> None:
    model = cpu_recipe_model(image_size=64, backbone_weights=None, epochs=2)
    assert model.model.patch_features.layers == CPU_RECIPE["layers"] and model.schedule.epochs == 2
    assert tuple(model.pre_processor.transform.transforms[0].size) == (64, 64)
    # (height, width) too; a pair built Resize([(h, w), (h, w)]), which failed on the first batch in interpolate
    pair = cpu_recipe_model(image_size=(64, 96), backbone_weights=None)
    assert tuple(pair.pre_processor.transform.transforms[0].size) == (64, 96)
    with pytest.raises(TypeError, match=r"image_size='64': one side or \(height, width\) in whole pixels"):
        cpu_recipe_model(image_size="64", backbone_weights=None)
    with pytest.raises(ValueError, match="image_size and pre_processor both set the resize"):  # it was ignored
        cpu_recipe_model(image_size=64, backbone_weights=None, pre_processor=pair.pre_processor)
