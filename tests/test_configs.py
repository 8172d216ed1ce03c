"""Every YAML under configs/ composes against the schema; bad input fails naming the key."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from dino_mx.config import config_dir, register_schemas

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
