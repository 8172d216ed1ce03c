"""Every YAML under configs/ composes against the schema; bad input fails naming the key."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from dino_mx.config import (
    AugmentConfig,
    DINOv1Config,
    DINOv2Config,
    FreezeConfig,
    FullAdapterConfig,
    LabelGuidedConfig,
    LoRAConfig,
    apply_overrides,
    compose_train_config,
    config_dir,
    register_schemas,
    upgrade_saved_config,
)
from dino_mx.engine.resume import config_differences

register_schemas()
CONFIGS = config_dir()
GROUPS = ["data", "model", "adapter", "augment", "method", "optim", "trainer", "paths"]


def make(overrides=()):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def group_options():
    for group in GROUPS:
        for yaml in sorted((CONFIGS / group).glob("*.yaml")):
            yield f"{group}={yaml.stem}"
    for yaml in sorted((CONFIGS / "experiment").glob("*.yaml")):
        yield f"+experiment={yaml.stem}"


@pytest.mark.parametrize("override", list(group_options()))
def test_every_yaml_composes(override):
    cfg = make([override, "data.root=/data"])
    # Interpolations resolve and every value has its schema type.
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert set(GROUPS) <= set(resolved)


def test_experiments_are_short_diffs():
    for yaml in (CONFIGS / "experiment").glob("*.yaml"):
        text = yaml.read_text()
        assert text.startswith("# @package _global_"), yaml
        assert len(text.splitlines()) < 40, f"{yaml} should be a short override"


def test_mistyped_key_fails_naming_it():
    with pytest.raises(ConfigCompositionException) as err:
        make(["optim.lrr=1"])
    assert "lrr" in str(err.value.__cause__) or "lrr" in str(err.value)


def test_bad_value_type_fails_naming_the_field():
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        make(["optim.lr=abc"])
    assert "optim.lr" in str(err.value) + str(err.value.__cause__)


def test_unknown_group_option_lists_the_valid_ones():
    with pytest.raises(Exception) as err:
        make(["model=vit_giant"])
    message = str(err.value)
    assert "vit_giant" in message and "vit_tiny" in message and "dinov2_small" in message


def test_schema_rejects_keys_in_code_too():
    cfg = make()
    with pytest.raises(ConfigAttributeError, match="max_step"):
        cfg.trainer.max_step = 3  # noqa: B018 - struct mode


def test_configs_folder_is_the_repository_one_or_packaged():
    assert (Path(CONFIGS) / "train.yaml").is_file()


def test_data_group_composes_inside_an_outer_hydra_context() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        outer = compose("train", overrides=["+experiment=smoke"])
        inner = compose_train_config(["data=bloodcells", "data.size=28"])
        again = compose("train", overrides=["+experiment=smoke"])  # outer context restored
    assert inner.data.name == "bloodcells" and inner.data.file == "bloodcells_wbc_28.npz"
    assert outer == again


def test_overrides_on_a_saved_config_set_values_and_reject_mistyped_keys():
    saved = OmegaConf.create(OmegaConf.to_container(make(["data=bloodcells"]), resolve=True))
    cfg = apply_overrides(saved, ["data.size=64", "augment.global_size=32"])
    assert (cfg.data.size, cfg.augment.global_size, cfg.data.name) == (64, 32, "bloodcells")
    with pytest.raises(ConfigAttributeError, match="sizee"):
        apply_overrides(saved, ["data.sizee=64"])


@pytest.mark.parametrize(
    ("override", "group", "schema"),
    [
        ("adapter=full", "adapter", FullAdapterConfig),
        ("adapter=lora", "adapter", LoRAConfig),
        ("adapter=freeze", "adapter", FreezeConfig),
        ("method=dinov1", "method", DINOv1Config),
        ("method=dinov2", "method", DINOv2Config),
        ("augment=medical", "augment", AugmentConfig),
        ("augment=label_guided", "augment", LabelGuidedConfig),
    ],
)
def test_each_option_is_validated_against_its_own_schema(override, group, schema):
    assert OmegaConf.get_type(make([override])[group]) is schema


def test_method_dinov2_brings_its_layerwise_lr_decay_and_the_command_line_wins():
    assert (make().optim.layerwise_decay, make().optim.patch_embed_lr_mult) == (1.0, 1.0)
    dinov2 = make(["method=dinov2"]).optim
    assert (dinov2.layerwise_decay, dinov2.patch_embed_lr_mult) == (0.9, 0.2)
    assert make(["method=dinov2", "optim.layerwise_decay=0.7"]).optim.layerwise_decay == 0.7
    assert make(["+experiment=pneumonia_dinov2"]).optim.patch_embed_lr_mult == 1.0


def test_resolved_config_yaml_holds_plain_values_and_compares_equal_on_resume():
    cfg = make(["method=dinov2", "adapter=lora", "trainer.on_collapse=stop"])
    assert cfg.trainer.on_collapse == "stop" and f"{cfg.adapter.bias}" == "none"
    text = OmegaConf.to_yaml(cfg, resolve=True)  # what a run writes beside its checkpoints
    assert "on_collapse: stop" in text and "centering: softmax_center" in text
    saved = OmegaConf.to_container(OmegaConf.create(text))
    assert config_differences(saved, OmegaConf.to_container(cfg, enum_to_str=True)) == []


def test_a_config_saved_by_an_older_version_reads_in_todays_layout():
    old = OmegaConf.to_container(make(["adapter=lora"]), resolve=True, enum_to_str=True)
    old["method"] |= {"layerwise_decay": 0.8, "patch_embed_lr_mult": 0.5, "ibot": {"weight": 0.0}}
    del old["optim"]["layerwise_decay"], old["optim"]["patch_embed_lr_mult"]
    old["adapter"]["num_layers"] = 0  # every adapter's keys were in one schema
    new = upgrade_saved_config(old)
    assert (new["optim"]["layerwise_decay"], new["optim"]["patch_embed_lr_mult"]) == (0.8, 0.5)
    assert "ibot" not in new["method"] and "num_layers" not in new["adapter"]
    cfg = apply_overrides(OmegaConf.create(old), ["adapter.r=4"])
    assert OmegaConf.get_type(cfg.adapter) is LoRAConfig and cfg.adapter.r == 4
    with pytest.raises(ConfigAttributeError, match="num_layers"):
        apply_overrides(OmegaConf.create(old), ["adapter.num_layers=2"])
