"""Composing the training config with Hydra, and reading a run's saved ``config.yaml`` back.

A saved config is plain YAML (``OmegaConf.to_yaml(cfg, resolve=True)``); an older dino-mx wrote
some keys elsewhere or kept keys another option has. :func:`upgrade_saved_config` puts such a
config into today's layout so that resume can compare it and evaluation can re-validate it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dino_mx.config.schemas import OPTION_SCHEMAS, TrainConfig, option_schema, register_schemas

# Keys that moved: old (section, key) -> new (section, key).
MOVED = {
    ("method", "layerwise_decay"): ("optim", "layerwise_decay"),
    ("method", "patch_embed_lr_mult"): ("optim", "patch_embed_lr_mult"),
}


def config_dir() -> Path:
    """The ``configs/`` folder: packaged inside the wheel, or at the top of a source checkout."""
    packaged = Path(str(resources.files("dino_mx"))) / "configs"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"dino-mx configs not found in {packaged} or {checkout}")


def upgrade_saved_config(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config (nested dicts) in today's layout: moved keys (:data:`MOVED`) at their new
    place, and in each group of :data:`~dino_mx.config.schemas.OPTION_SCHEMAS` only the keys of
    the chosen option (an old ``adapter=lora`` config also held ``num_layers``, an old DINOv1
    config the iBOT keys it refused to use)."""
    out = copy.deepcopy(dict(saved))
    for (section, key), (new_section, new_key) in MOVED.items():
        if isinstance(out.get(section), dict) and key in out[section]:
            value = out[section].pop(key)
            out.setdefault(new_section, {}).setdefault(new_key, value)
    for group in OPTION_SCHEMAS:
        section = out.get(group)
        if isinstance(section, dict) and "name" in section:
            schema = option_schema(group, section["name"])
            keys = {f.name for f in dataclasses.fields(schema)}
            out[group] = {k: v for k, v in section.items() if k in keys}
    return out


def saved_schema(saved: Mapping[str, Any]) -> DictConfig:
    """The structured train schema with, in each option group, the schema of the option that
    ``saved`` chose: what a saved config is validated against."""
    schema = OmegaConf.structured(TrainConfig)
    for group in OPTION_SCHEMAS:
        name = (saved.get(group) or {}).get("name")
        if name is not None:
            schema[group] = OmegaConf.structured(option_schema(group, name))
    return schema


def compose_train_config(overrides: Sequence[str]) -> DictConfig:
    """``configs/train.yaml`` composed with Hydra's compose API and ``overrides``.

    For code that needs a training config outside ``dino-mx train`` (evaluation baselines, a
    distillation teacher's preset). Works inside another Hydra context too (a script that
    composed its own training config): that context is set aside for the call and put back
    afterwards.
    """
    register_schemas()
    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(config_dir()), version_base="1.3", job_name="dino_mx_eval"
        ):
            return compose(config_name="train", overrides=list(overrides))
    finally:
        if outer is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(outer)


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply ``KEY=VALUE`` overrides (Hydra syntax) to a saved config, validated by the schema
    so that a mistyped key fails naming it."""
    saved = upgrade_saved_config(OmegaConf.to_container(cfg))  # type: ignore[arg-type]
    cfg = OmegaConf.merge(saved_schema(saved), saved)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    return cfg
