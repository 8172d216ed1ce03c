"""The optimiser's parameter groups: DINO's weight-decay split and DINOv2's layer-wise lr decay
(the per-step values they are scaled by live in :mod:`dino_mx.engine.schedules`).

Every group carries ``apply_wd`` (biases and 1-D parameters such as norms get no weight decay)
and ``lr_scale``, the factor the trainer applies to the scheduled lr each step. With
layer-wise decay (BEiT, Bao et al. 2022; DINOv2, Oquab et al. 2023) block ``i`` of a ``depth``
block backbone trains at ``decay ** (depth - i)`` of the lr, the embeddings at
``decay ** (depth + 1)``, the final norm and the heads at the full lr: the early, generic
layers move least. The patch embedding is further scaled by ``patch_embed_lr_mult`` (DINOv2:
0.2), which DINOv2 found to stabilise training.
"""

from __future__ import annotations

from torch import nn

from dino_mx.models.backbone import Backbone
from dino_mx.models.blocks import block_index, block_prefix, num_blocks

PATCH_EMBED = "embeddings.patch_embeddings."


def _find_backbone(model: nn.Module) -> tuple[str, Backbone] | None:
    for name, module in model.named_modules():
        if isinstance(module, Backbone):
            return (f"{name}." if name else ""), module
    return None


def lr_scales(
    model: nn.Module, layerwise_decay: float = 1.0, patch_embed_lr_mult: float = 1.0
) -> dict[str, float]:
    """The lr factor of each trainable parameter of ``model``, by name.

    Args:
        model: A network holding one :class:`~dino_mx.models.Backbone` (the student).
        layerwise_decay: Per-block lr decay in (0, 1]; 1 disables it.
        patch_embed_lr_mult: Extra factor of the patch embedding's lr.
    """
    if not 0 < layerwise_decay <= 1:
        raise ValueError(f"layerwise_decay must be in (0, 1], got {layerwise_decay}")
    if patch_embed_lr_mult < 0:
        raise ValueError(f"patch_embed_lr_mult must be >= 0, got {patch_embed_lr_mult}")
    found = _find_backbone(model)
    if found is None:  # no backbone: nothing to decay
        return {n: 1.0 for n, p in model.named_parameters() if p.requires_grad}
    prefix, backbone = found
    inner = f"{prefix}model."
    depth = num_blocks(backbone.model)
    blocks = block_prefix(backbone.model)
    scales = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0  # final norm, heads
        if name == f"{prefix}mask_token":  # the wrapper's mask token is an embedding
            scale = layerwise_decay ** (depth + 1)
        elif name.startswith(inner):
            sub = name[len(inner) :]
            index = block_index(sub, blocks)
            if index is not None:
                scale = layerwise_decay ** (depth - index)
            elif sub.startswith("embeddings."):
                scale = layerwise_decay ** (depth + 1)
            if sub.startswith(PATCH_EMBED):
                scale *= patch_embed_lr_mult
        scales[name] = scale
    return scales


def param_groups(
    model: nn.Module, layerwise_decay: float = 1.0, patch_embed_lr_mult: float = 1.0
) -> list[dict]:
    """Trainable parameters of ``model`` grouped by (lr scale, weight decay or not).

    With the defaults this is DINO's split: one group with weight decay, one without, both at
    ``lr_scale`` 1. Groups are ordered by lr scale, the decayed group first within a scale;
    parameters keep the model's order.

    Returns:
        ``[{"params": [...], "apply_wd": bool, "lr_scale": float}, ...]`` for ``torch.optim``.
    """
    scales = lr_scales(model, layerwise_decay, patch_embed_lr_mult)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if name not in scales:
            continue
        apply_wd = not (name.endswith(".bias") or p.ndim == 1)
        groups.setdefault((scales[name], apply_wd), []).append(p)
    ordered = sorted(groups, key=lambda key: (key[0], not key[1]))
    return [{"params": groups[k], "apply_wd": k[1], "lr_scale": k[0]} for k in ordered]
