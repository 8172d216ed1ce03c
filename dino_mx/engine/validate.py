"""Checks of a composed training config, run before anything is built or written.

Hydra and the schemas in :mod:`dino_mx.config` check each key's name and type, and each closed
choice; this module adds what they cannot: keys added with ``+key=`` that the schema does not know
(Hydra's ``+`` adds keys even to a struct config), value ranges — positive sizes and counts,
probabilities in [0, 1], crop-scale ranges, a finite positive learning rate —, LoRA targets (a
preset or a list: no OmegaConf type says that) and an option's ``name`` changed to another
option's. Each problem is reported as ``key=value: must be ...``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dino_mx.config import OPTION_SCHEMAS, option_schema, schema_fields, unknown_key_message
from dino_mx.errors import UserError
from dino_mx.models.lora import ALL_LINEAR, PRESETS

_HEAD = ("out_dim", "hidden_dim", "bottleneck_dim", "nlayers")

POSITIVE_INTS = (
    *("trainer.max_steps", "trainer.batch_size", "trainer.grad_accum", "trainer.log_every"),
    *("model.patch_size", "model.hidden_size", "model.depth", "model.num_heads"),
    *("model.image_size", "augment.global_size", "augment.local_size"),
    *(f"method.head.{k}" for k in _HEAD),
    *(f"method.ibot.head.{k}" for k in _HEAD),
    *("adapter.r", "distill.out_dim", "trainer.collapse_window"),
)
NON_NEGATIVE = (
    *("trainer.save_every", "trainer.keep_last", "trainer.eval_every", "trainer.tb_images"),
    "trainer.eval_count",
    "trainer.min_updates_per_epoch",
    *("augment.n_local", "augment.roi_crops", "adapter.num_layers", "data.num_workers"),
    *("distill.projector_hidden", "distill.weight", "adapter.alpha"),
    *("augment.brightness", "augment.contrast", "augment.saturation"),
    *("optim.min_lr", "optim.weight_decay", "optim.weight_decay_end", "optim.clip_grad"),
    *("method.dino_weight", "method.koleo_weight", "method.ibot.weight"),
    "optim.patch_embed_lr_mult",
)
POSITIVE = (
    *("optim.lr", "method.student_temp", "method.teacher_temp", "method.warmup_teacher_temp"),
    *("model.mlp_ratio", "distill.teacher_temp", "distill.student_temp", "data.std"),
)
PROBABILITIES = (
    *("augment.hflip", "augment.vflip", "augment.color_jitter", "augment.grayscale"),
    *("augment.solarize", "augment.roi_prob", "augment.blur"),
    *("method.ibot.mask_sample_probability", "method.warmup_teacher_temp_ratio"),
    *("method.center_momentum", "method.momentum_teacher"),
    *("optim.warmup_ratio", "optim.freeze_last_layer_ratio"),
)
BELOW_ONE = ("adapter.dropout", "model.drop_path_rate", "optim.betas")  # [0, 1)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair(check: Callable[[float, float], bool]) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(map(_finite, v)) and check(*v)

    return ok


# (keys, test of one value, what a valid value is). A list value under a scalar rule is checked
# element by element (augment.blur, optim.betas, data.std).
RULES: list[tuple[tuple[str, ...], Callable[[Any], bool], str]] = [
    (POSITIVE_INTS, lambda v: v >= 1, "an integer >= 1"),
    (NON_NEGATIVE, lambda v: _finite(v) and v >= 0, "a number >= 0"),
    (POSITIVE, lambda v: _finite(v) and v > 0, "a finite number > 0"),
    (PROBABILITIES, lambda v: _finite(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    (BELOW_ONE, lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)"),
    (
        ("trainer.epochs", "trainer.budget_min", "method.koleo_gate"),
        lambda v: _finite(v) and v > 0,
        "a number > 0",
    ),
    (("augment.hue",), lambda v: _finite(v) and 0 <= v <= 0.5, "in [0, 0.5]"),
    (("augment.roi_jitter",), lambda v: _finite(v) and 0 <= v < 0.5, "in [0, 0.5)"),
    (
        (
            "optim.layerwise_decay",
            "trainer.collapse_uniform_ratio",
            "trainer.collapse_onehot_ratio",
        ),
        lambda v: _finite(v) and 0 < v <= 1,
        "in (0, 1]",
    ),
]
LORA_PRESETS = (*PRESETS, ALL_LINEAR)
PAIR_RULES: list[tuple[tuple[str, ...], Callable[[Any], bool], str]] = [
    (
        ("augment.global_scale", "augment.local_scale"),
        _pair(lambda lo, hi: 0 < lo <= hi <= 1),
        "[lo, hi] with 0 < lo <= hi <= 1",
    ),
    (
        ("method.ibot.mask_ratio_min_max",),
        _pair(lambda lo, hi: 0 <= lo <= hi <= 1),
        "[lo, hi] with 0 <= lo <= hi <= 1",
    ),
    (("augment.roi_scale",), _pair(lambda lo, hi: 0 < lo <= hi), "[lo, hi] with 0 < lo <= hi"),
]


def _schema(node: DictConfig) -> type | None:
    """The dataclass a node was made from (an option's own, e.g. ``LoRAConfig``), if any."""
    cls = OmegaConf.get_type(node)
    return cls if isinstance(cls, type) and cls is not dict else None


def unknown_keys(cfg: DictConfig, path: str = "") -> Iterator[str]:
    """``unknown key ...`` for each key of ``cfg`` that its schema does not define (added with
    ``+key=``), naming the valid keys of its section."""
    schema = _schema(cfg)
    valid = schema_fields(path, schema)
    if valid is None:
        return
    for key in cfg.keys():
        full = f"{path}.{key}" if path else str(key)
        if key not in valid:
            yield unknown_key_message(full, schema)
            continue
        child = cfg._get_node(key)  # the node itself: no interpolation is resolved
        if isinstance(child, DictConfig) and not child._is_none():
            yield from unknown_keys(child, full)


def _option_problems(cfg: DictConfig) -> Iterator[str]:
    """An option whose ``name`` was set to another option's (``adapter=lora adapter.name=freeze``):
    the builders go by the name and would read keys the schema does not hold."""
    for group in OPTION_SCHEMAS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "name" not in node:
            continue
        schema, named = _schema(node), option_schema(group, node.name)
        if schema in OPTION_SCHEMAS[group].values() and schema is not named:
            yield f"{group}.name={node.name}: choose the option instead ({group}={node.name})"


def _targets_problem(cfg: DictConfig) -> str | None:
    present, targets = _values(cfg, "adapter.targets")
    if not present or targets in LORA_PRESETS:
        return None
    if isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets):
        return None
    return f"adapter.targets={targets}: must be one of {', '.join(LORA_PRESETS)} or a list of names"


def _values(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    missing = object()
    value = OmegaConf.select(cfg, key, default=missing)
    if value is missing:
        return False, None
    return True, OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def problems(cfg: DictConfig) -> list[str]:
    """Every problem of ``cfg``, one short sentence each (empty: valid)."""
    found = [*unknown_keys(cfg), *_option_problems(cfg)]
    for keys, ok, valid in RULES:
        for key in keys:
            present, value = _values(cfg, key)
            items = value if isinstance(value, list) else [value]
            if present and value is not None and not all(ok(v) for v in items):
                found.append(f"{key}={value}: must be {valid}")
    if (targets := _targets_problem(cfg)) is not None:
        found.append(targets)
    for keys, ok, valid in PAIR_RULES:
        for key in keys:
            present, value = _values(cfg, key)
            if present and value is not None and not ok(value):
                found.append(f"{key}={value}: must be {valid}")
    t = cfg.trainer
    if t.max_steps is None and t.epochs is None and t.budget_min is None:
        found.append("trainer.max_steps=null: set it, trainer.epochs or trainer.budget_min")
    model = cfg.model
    if model.pretrained is None and model.num_heads >= 1 and model.hidden_size % model.num_heads:
        found.append(
            f"model.hidden_size={model.hidden_size}: must be a multiple of "
            f"model.num_heads={model.num_heads}"
        )
    return found


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`~dino_mx.errors.UserError` naming every bad key, value and valid range.

    Cheap: reads only the config, so it runs before any model, folder or file is made.
    """
    found = problems(cfg)
    if found:
        raise UserError("; ".join(found))
