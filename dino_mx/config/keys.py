"""Which keys a config section allows, for error messages that list them.

A mistyped key (``optim.lrr=1``) should fail with the keys the user could have meant, and for a
group whose options differ (``adapter``), with the keys of the option chosen.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from dino_mx.config.schemas import OPTION_SCHEMAS, TrainConfig


def schema_fields(path: str, schema: type | None = None) -> list[str] | None:
    """The keys allowed in section ``path`` (``""``: the top level), or None when it is not a
    schema section (a free-form value such as ``adapter.targets``).

    Args:
        path: Dotted section, e.g. ``method.head``.
        schema: The section's own type when known (``OmegaConf.get_type`` of the node, or an
            OmegaConf error's ``object_type``): the option's schema, e.g. ``LoRAConfig``. Else
            the type the top-level schema declares at ``path``.
    """
    cls: Any = schema
    if cls is None:
        cls = TrainConfig
        for part in [p for p in path.split(".") if p]:
            cls = typing.get_type_hints(cls).get(part)
            if not dataclasses.is_dataclass(cls):
                return None
    if not dataclasses.is_dataclass(cls):
        return None
    return [f.name for f in dataclasses.fields(cls)]


def _section_label(section: str, schema: type | None) -> str:
    """``adapter=lora`` for an option's schema, else the section (``the config`` at the top)."""
    options = OPTION_SCHEMAS.get(section, {})
    option = next((name for name, cls in options.items() if cls is schema), None)
    if option is not None:
        return f"{section}={option}"
    return section or "the config"


def unknown_key_message(full_key: str, schema: type | None = None) -> str:
    """``unknown key optim.lrr; valid keys of optim: name, lr, ...``; ``schema`` is the type of
    the section holding the key, when known (see :func:`schema_fields`)."""
    section = full_key.rpartition(".")[0]
    valid = schema_fields(section, schema)
    if valid is None:
        return f"unknown key {full_key}"
    where = _section_label(section, schema)
    return f"unknown key {full_key}; valid keys of {where}: {', '.join(valid)}"
