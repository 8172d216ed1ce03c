"""Where the transformer blocks of a Hugging Face ViT live, whatever the version names them.

transformers 5 keeps ``ViTModel``'s blocks in ``layers`` and ``Dinov2Model``'s in
``encoder.layer``; transformers 4 used ``encoder.layer`` for both. Rather than a table per
version, the blocks are found as the ``nn.ModuleList`` with ``config.num_hidden_layers`` entries.
"""

from __future__ import annotations

import re

from torch import nn


def block_prefix(model: nn.Module) -> str:
    """Module name of the list of transformer blocks (``layers``, ``encoder.layer``, ...).

    Args:
        model: A ``ViTModel`` / ``Dinov2Model`` (or anything whose config has
            ``num_hidden_layers`` and that holds its blocks in one ``nn.ModuleList``).

    Raises:
        ValueError: No ``nn.ModuleList`` of ``num_hidden_layers`` modules was found.
    """
    depth = num_blocks(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return name
    raise ValueError(f"no list of {depth} transformer blocks in {type(model).__name__}")


def num_blocks(model: nn.Module) -> int:
    """The depth, from the model's config, else from the longest ``nn.ModuleList``."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        return int(config.num_hidden_layers)
    lists = [len(m) for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks")
    return max(lists)


def block_index(name: str, prefix: str) -> int | None:
    """The block number in a parameter or module name under ``prefix``, else None.

    ``block_index("layers.3.mlp.fc1.weight", "layers") == 3``.
    """
    match = re.match(rf"{re.escape(prefix)}\.(\d+)(?:\.|$)", name)
    return int(match.group(1)) if match else None
