"""What of the backbone trains: everything, LoRA adapters, or all but the first N blocks.

The three strategies of DINO-MX (arXiv 2511.01610, Table 10) for adapting a pretrained ViT to a
medical domain: ``full`` fine-tuning, ``lora`` (:mod:`dino_mx.models.lora`) and ``freeze``. They
act on :class:`~dino_mx.models.backbone.Backbone` only: the DINO head always trains in full.
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn

from dino_mx.config import AdapterConfig
from dino_mx.models.backbone import Backbone
from dino_mx.models.blocks import block_index, block_prefix, num_blocks
from dino_mx.models.lora import has_lora, inject_lora, merge_lora

ADAPTERS = ("full", "lora", "freeze")


def freeze_blocks(model: nn.Module, num_layers: int) -> None:
    """Stop gradients for the embeddings and the first ``num_layers`` blocks, in place.

    The embeddings are the patch embedding, position embedding, CLS token and, where the model
    has them, the mask and register tokens (everything under ``model.embeddings``). Later
    blocks and the final norm keep their ``requires_grad``.

    Raises:
        ValueError: ``num_layers`` is negative or larger than the depth (named in the message).
    """
    depth = num_blocks(model)
    if not 0 <= num_layers <= depth:
        raise ValueError(
            f"adapter.num_layers={num_layers}, but the model has {depth} blocks: choose 0..{depth}"
        )
    prefix = block_prefix(model)
    for name, p in model.named_parameters():
        index = block_index(name, prefix)
        if name.startswith("embeddings.") or (index is not None and index < num_layers):
            p.requires_grad_(False)


def _targets(targets: object) -> str | list[str]:
    if isinstance(targets, str):
        return targets
    if isinstance(targets, ListConfig | list | tuple):
        return [str(t) for t in targets]
    raise ValueError(f"adapter.targets must be a preset name or a list, got {targets!r}")


def apply_adapter(backbone: Backbone, cfg: AdapterConfig | DictConfig) -> Backbone:
    """Builder: the ``adapter`` config group applied to ``backbone``, in place.

    ``full`` leaves it as it is; ``lora`` injects adapters into ``backbone.model`` and freezes
    its weights; ``freeze`` freezes the embeddings and the first ``num_layers`` blocks.

    Returns:
        The same ``backbone``, for chaining.
    """
    if cfg.name == "full":
        return backbone
    if cfg.name == "lora":
        inject_lora(backbone.model, cfg.r, cfg.alpha, cfg.dropout, cfg.bias, _targets(cfg.targets))
    elif cfg.name == "freeze":
        freeze_blocks(backbone.model, cfg.num_layers)
    else:
        raise ValueError(f"unknown adapter '{cfg.name}'; valid choices: {', '.join(ADAPTERS)}")
    return backbone


def load_adapted_state(
    backbone: Backbone,
    state: Mapping[str, Tensor],
    cfg: AdapterConfig | DictConfig | None,
    from_base: frozenset[str] | set[str] = frozenset(),
) -> Backbone:
    """Load trained weights into ``backbone`` the way they were trained, then merge LoRA.

    Args:
        backbone: Holds the base weights: a fresh build, or the run's frozen base.
        state: ``backbone.model`` weights of a checkpoint (prefix removed).
        cfg: The run's ``adapter`` config; None (a run older than adapters) means ``full``.
        from_base: Names the checkpoint left out because the base provides them; every other
            weight of the adapted model must be in ``state``.

    Returns:
        ``backbone`` with the weights loaded and any LoRA update merged: a plain Hugging Face
        model inside, computing the same features as the trained network.
    """
    if cfg is not None:
        apply_adapter(backbone, cfg)
    missing, unexpected = backbone.model.load_state_dict(dict(state), strict=False)
    if unexpected or set(missing) != set(from_base):
        lacking = sorted(set(missing) - set(from_base))
        raise KeyError(
            "checkpoint weights do not fit the adapted model: unexpected "
            f"{sorted(unexpected)[:5]}, missing {lacking[:5]}"
        )
    if has_lora(backbone.model):
        merge_lora(backbone.model)
    return backbone
