"""LoRA (Hu et al., ICLR 2022) injected with ``peft`` into a Hugging Face ViT, and merged back.

A LoRA layer computes ``W x + (alpha / r) * B A x`` with ``A`` (r, in) and ``B`` (out, r); ``W``
stays frozen and ``B`` starts at zero, so training starts from the pretrained function.
``peft.inject_adapter_in_model`` replaces the target ``nn.Linear`` modules in place: the model
keeps its class and forward, its frozen weight moves to ``<layer>.base_layer.weight`` and the
adapter adds ``<layer>.lora_A.default.weight`` / ``<layer>.lora_B.default.weight``.

Target layers are named by preset and resolved against the model's own module names, because
they differ by transformers version: 5.x names the attention projections of ``ViTModel`` and
``Dinov2Model`` ``q_proj k_proj v_proj o_proj``; 4.x named them ``attention.query``,
``attention.key``, ``attention.value`` and ``attention.output.dense``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from dino_mx.models.blocks import block_index, block_prefix

# Per preset, one naming scheme per transformers generation (5.x first); the first scheme
# whose every name is found in the model's blocks wins.
PRESETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "attention": (("q_proj", "v_proj"), ("attention.query", "attention.value")),
    "attention_all": (
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        ("attention.query", "attention.key", "attention.value", "attention.output.dense"),
    ),
}
ALL_LINEAR = "all_linear"
BIASES = ("none", "all", "lora_only")


def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Linear`` modules, in module order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _matches(name: str, key: str) -> bool:
    """peft's rule: a key names a module by its full name or by a dotted suffix of it."""
    return name == key or name.endswith("." + key)


def describe_linear_layers(model: nn.Module) -> str:
    """The linear layers, one line per name pattern with block numbers folded into ``<i>``."""
    try:
        prefix = block_prefix(model)
    except ValueError:
        prefix = None
    counts: dict[str, int] = {}
    for name in linear_layer_names(model):
        if prefix is not None and block_index(name, prefix) is not None:
            name = re.sub(rf"^{re.escape(prefix)}\.\d+\.", f"{prefix}.<i>.", name)
        counts[name] = counts.get(name, 0) + 1
    return "\n".join(f"  {n}" + (f"  (x{c})" if c > 1 else "") for n, c in counts.items())


def resolve_lora_targets(model: nn.Module, targets: str | Sequence[str]) -> list[str]:
    """Full module names of the linear layers LoRA adapts.

    Args:
        model: The Hugging Face model (``Backbone.model``).
        targets: A preset — ``attention`` (query and value, LoRA's default), ``attention_all``
            (query, key, value and output projections), ``all_linear`` (every linear layer of
            every block, MLP included) — or a list of module names or dotted suffixes
            (``["q_proj", "v_proj"]``, ``["layers.11.mlp.fc2"]``).

    Returns:
        Matching module names, in module order.

    Raises:
        ValueError: Unknown preset, a preset this model has none of the names for, or a list
            entry that matches no linear layer; the message lists the model's linear layers.
    """
    linear = linear_layer_names(model)
    if isinstance(targets, str):
        prefix = block_prefix(model)
        in_blocks = [n for n in linear if block_index(n, prefix) is not None]
        if targets == ALL_LINEAR and in_blocks:
            return in_blocks
        if targets not in PRESETS and targets != ALL_LINEAR:
            choices = ", ".join([*PRESETS, ALL_LINEAR])
            raise ValueError(
                f"unknown adapter.targets preset '{targets}'; valid presets: {choices}, "
                "or a list of module names"
            )
        for scheme in PRESETS.get(targets, ()):
            if all(any(_matches(n, key) for n in in_blocks) for key in scheme):
                return [n for n in in_blocks if any(_matches(n, key) for key in scheme)]
        raise ValueError(
            f"adapter.targets={targets} found none of its layers in {type(model).__name__}; "
            f"pass an explicit list. Its linear layers:\n{describe_linear_layers(model)}"
        )
    keys = [str(k) for k in targets]
    unmatched = [k for k in keys if not any(_matches(n, k) for n in linear)]
    if not keys or unmatched:
        raise ValueError(
            f"adapter.targets {unmatched or keys} match no linear layer of "
            f"{type(model).__name__}. Its linear layers:\n{describe_linear_layers(model)}"
        )
    return [n for n in linear if any(_matches(n, k) for k in keys)]


def inject_lora(
    model: nn.Module,
    r: int,
    alpha: float,
    dropout: float = 0.0,
    bias: str = "none",
    targets: str | Sequence[str] = "attention",
) -> list[str]:
    """Replace the target layers of ``model`` by LoRA layers, in place, and freeze the rest.

    After the call only ``lora_A``/``lora_B`` (and the biases chosen by ``bias``) require
    gradients; every other weight of ``model`` is frozen.

    Args:
        model: The Hugging Face model (``Backbone.model``).
        r: Rank of the update (>= 1).
        alpha: The update is scaled by ``alpha / r``.
        dropout: Dropout on the adapter's input.
        bias: ``none``, ``all`` (every bias trains) or ``lora_only`` (biases of adapted layers).
        targets: See :func:`resolve_lora_targets`.

    Returns:
        The adapted module names.
    """
    if r < 1:
        raise ValueError(f"adapter.r must be >= 1, got {r}")
    if bias not in BIASES:
        raise ValueError(f"adapter.bias '{bias}'; valid choices: {', '.join(BIASES)}")
    names = resolve_lora_targets(model, targets)
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias=bias, target_modules=names
    )
    inject_adapter_in_model(config, model)
    return names


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` holds peft adapter layers."""
    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight (``W + alpha/r * B A``) and remove the
    adapter layers, in place: the model becomes a plain Hugging Face model again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge(safe_merge=True)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config
    return model
