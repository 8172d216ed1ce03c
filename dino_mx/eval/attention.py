"""Last-layer CLS-to-patch self-attention of a ViT, as in DINO's ``visualize_attention.py``
(Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021).

Training runs Hugging Face models with ``sdpa`` attention, which never materialises the
attention weights. :func:`eager_attention` switches a model to the ``eager`` implementation for
the duration of a visualisation and restores the previous one, so training keeps its speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, ViTModel

from dino_mx.models.backbone import Backbone


def _base_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model under a PEFT wrapper, if any."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model  # type: ignore[return-value]


def _set_attention(model: PreTrainedModel, implementation: str) -> None:
    if hasattr(model, "set_attn_implementation"):  # transformers >= 4.56
        model.set_attn_implementation(implementation)
    else:  # older releases read the config at forward time
        model.config._attn_implementation = implementation


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Run ``model`` (a transformers model, possibly PEFT-wrapped) with eager attention inside
    the block, so ``output_attentions=True`` returns the weights; restore it afterwards."""
    base = _base_model(model)
    previous = base.config._attn_implementation
    _set_attention(base, "eager")
    try:
        yield
    finally:
        _set_attention(base, previous or "sdpa")


@torch.no_grad()
def cls_attention(backbone: Backbone, images: Tensor) -> Tensor:
    """Last-layer attention of the CLS query over the patch tokens, per head.

    Register tokens (DINOv2 with registers) and CLS itself are left out and each head's weights
    are renormalised over the patches, so every map is a distribution over the patch grid.

    Args:
        backbone: The encoder; its model runs with eager attention for this call only.
        images: (B, C, H, W) normalised images, H and W multiples of the patch size.

    Returns:
        (B, heads, H / p, W / p) maps, each summing to 1.
    """
    model, p = backbone.model, backbone.patch_size
    kwargs = {"interpolate_pos_encoding": True} if isinstance(_base_model(model), ViTModel) else {}
    with eager_attention(model):
        out = model(pixel_values=images, output_attentions=True, **kwargs)
    if not out.attentions or out.attentions[-1] is None:
        raise RuntimeError(f"{type(model).__name__} returned no attention weights")
    weights = out.attentions[-1]  # (B, heads, tokens, tokens)
    cls_to_patch = weights[:, :, 0, backbone.num_prefix_tokens :].float()  # (B, heads, N)
    cls_to_patch = cls_to_patch / cls_to_patch.sum(-1, keepdim=True).clamp_min(1e-12)
    h, w = images.shape[-2] // p, images.shape[-1] // p
    return cls_to_patch.reshape(*cls_to_patch.shape[:2], h, w)  # N = h * w, row-major


def top_mass_mask(maps: Tensor, keep: float = 0.6) -> Tensor:
    """DINO's threshold: the highest-attention patches that together hold ``keep`` of the mass.

    As in DINO, patches are sorted by attention and a patch is kept when the mass of itself and
    every lower patch exceeds ``1 - keep``; the kept set is the smallest holding at least
    ``keep`` of the mass (ties broken by sort order).

    Args:
        maps: (..., h, w) non-negative maps.
        keep: Fraction of the attention mass to keep, in (0, 1].

    Returns:
        Boolean (..., h, w) masks.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    flat = maps.flatten(-2)  # (..., N)
    values, order = torch.sort(flat, dim=-1)  # ascending
    values = values / values.sum(-1, keepdim=True).clamp_min(1e-12)
    kept_sorted = torch.cumsum(values, dim=-1) > (1.0 - keep)
    kept = torch.empty_like(kept_sorted).scatter_(-1, order, kept_sorted)  # back to patch order
    return kept.reshape(maps.shape)


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "nearest") -> Tensor:
    """Maps (B, K, h, w) to image resolution (B, K, H, W), keeping each map's total mass
    (a patch's attention is spread over its pixels). ``nearest`` as DINO's figures."""
    up = F.interpolate(maps.float(), size=size, mode=mode)
    total = maps.float().sum((-2, -1), keepdim=True)
    return up * total / up.sum((-2, -1), keepdim=True).clamp_min(1e-12)
