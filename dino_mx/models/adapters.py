"""What of the backbone trains: everything, LoRA adapters, or all but the first N blocks.

The three strategies of DINO-MX (arXiv 2511.01610, Table 10) for adapting a pretrained ViT to a
medical domain: ``full`` fine-tuning, ``lora`` (:mod:`dino_mx.models.lora`) and ``freeze``. They
act on :class:`~dino_mx.models.backbone.Backbone` only: the DINO head always trains in full.

Each strategy is an :class:`Adapter` and says everything the rest of dino-mx needs to know of
it — what it freezes (:meth:`Adapter.apply`), whether a run keeps its frozen weights once in
``RUN/base`` rather than in every checkpoint (:attr:`Adapter.keeps_frozen_base`), how trained
weights are loaded back (:meth:`Adapter.load_state`) and folded into a plain Hugging Face model
for export (:meth:`Adapter.merge`), and how a model card names it. :data:`ADAPTERS` is the only
place the names live; :func:`build_adapter` turns an ``adapter`` config into a strategy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from dino_mx.models.backbone import Backbone
from dino_mx.models.blocks import block_index, block_prefix, num_blocks
from dino_mx.models.lora import inject_lora, merge_lora


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


@dataclass(frozen=True)
class Adapter:
    """A way of adapting the backbone; subclasses hold their options as fields."""

    name: ClassVar[str]
    # True: most of the backbone stays as training started, so the run writes it once to
    # RUN/base and checkpoints hold only what trains (dino_mx.checkpoint.frozen_base).
    keeps_frozen_base: ClassVar[bool] = True

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> Adapter:
        """The strategy with its fields read from an ``adapter`` config (other keys ignored:
        a config saved by an older dino-mx held every adapter's keys)."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})

    def apply(self, backbone: Backbone) -> Backbone:
        """Adapt ``backbone`` in place, before training; returns it for chaining."""
        return backbone

    def merge(self, backbone: Backbone) -> Backbone:
        """Fold the adaptation into plain weights (a Hugging Face model computing the same
        features), in place; returns ``backbone``."""
        return backbone

    def load_state(
        self,
        backbone: Backbone,
        state: Mapping[str, Tensor],
        from_base: frozenset[str] | set[str] = frozenset(),
    ) -> Backbone:
        """Load trained weights into ``backbone`` the way they were trained, then merge.

        Args:
            backbone: Holds the base weights: a fresh build, or the run's frozen base.
            state: ``backbone.model`` weights of a checkpoint (prefix removed).
            from_base: Names the checkpoint left out because the base provides them; every
                other weight of the adapted model must be in ``state``.

        Returns:
            ``backbone`` with the weights loaded and merged (:meth:`merge`).

        Raises:
            KeyError: The checkpoint's weights do not fit this adapter and model.
        """
        self.apply(backbone)
        missing, unexpected = backbone.model.load_state_dict(dict(state), strict=False)
        if unexpected or set(missing) != set(from_base):
            lacking = sorted(set(missing) - set(from_base))
            raise KeyError(
                "checkpoint weights do not fit the adapted model: unexpected "
                f"{sorted(unexpected)[:5]}, missing {lacking[:5]}"
            )
        return self.merge(backbone)

    def describe(self) -> str:
        """How a model card names the strategy, e.g. ``freeze (embeddings + first 6 ...)``."""
        return self.name

    def as_config(self) -> dict[str, Any]:
        """The ``adapter`` config of this strategy, as plain JSON values (what an export
        records in ``dino_mx_export.json``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        return {"name": self.name, **plain}


@dataclass(frozen=True)
class FullAdapter(Adapter):
    """Every backbone weight trains (the DINO-MX baseline)."""

    name: ClassVar[str] = "full"
    keeps_frozen_base: ClassVar[bool] = False


@dataclass(frozen=True)
class LoRAAdapter(Adapter):
    """Low-rank updates ``W + (alpha / r) * B @ A`` in ``targets``; the backbone is frozen."""

    name: ClassVar[str] = "lora"
    r: int
    alpha: float
    dropout: float
    bias: str  # none | all | lora_only: which biases also train
    targets: str | tuple[str, ...]  # a preset of dino_mx.models.lora, or module names

    def __post_init__(self) -> None:
        targets = self.targets
        if not isinstance(targets, str):
            if isinstance(targets, Mapping) or not hasattr(targets, "__iter__"):
                raise ValueError(
                    f"adapter.targets must be a preset name or a list, got {targets!r}"
                )
            object.__setattr__(self, "targets", tuple(str(t) for t in targets))
        object.__setattr__(self, "bias", str(self.bias))  # the enum of the schema, as peft wants

    def apply(self, backbone: Backbone) -> Backbone:
        targets = self.targets if isinstance(self.targets, str) else list(self.targets)
        inject_lora(backbone.model, self.r, self.alpha, self.dropout, self.bias, targets)
        return backbone

    def merge(self, backbone: Backbone) -> Backbone:
        merge_lora(backbone.model)
        return backbone

    def describe(self) -> str:
        targets = self.targets if isinstance(self.targets, str) else list(self.targets)
        return f"lora (r {self.r}, alpha {self.alpha}, targets {targets}; merged into the weights)"


@dataclass(frozen=True)
class FreezeAdapter(Adapter):
    """The embeddings and the first ``num_layers`` blocks are frozen; later blocks train."""

    name: ClassVar[str] = "freeze"
    num_layers: int

    def apply(self, backbone: Backbone) -> Backbone:
        freeze_blocks(backbone.model, self.num_layers)
        return backbone

    def describe(self) -> str:
        return f"freeze (embeddings + first {self.num_layers} blocks frozen)"


ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls for cls in (FullAdapter, LoRAAdapter, FreezeAdapter)
}


def build_adapter(cfg: Any) -> Adapter:
    """Builder: an ``adapter`` config (DictConfig, dict or schema dataclass) to its strategy.

    None, or a config without ``adapter.name``, is ``full``: a run older than adapters.

    Raises:
        ValueError: An unknown adapter name (the message lists the valid ones).
    """
    if cfg is None:
        return FullAdapter()
    values = cfg if isinstance(cfg, Mapping) else dataclasses.asdict(cfg)
    name = values.get("name", FullAdapter.name)
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter '{name}'; valid choices: {', '.join(ADAPTERS)}")
    return ADAPTERS[name].from_config(values)
