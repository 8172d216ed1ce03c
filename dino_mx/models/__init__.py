"""Backbones, adapters (LoRA, frozen blocks), heads and the multi-crop wrapper."""

from dino_mx.models.adapters import ADAPTERS, Adapter, build_adapter
from dino_mx.models.backbone import (
    Backbone,
    adapt_input_channels,
    build_backbone,
    build_seeded_backbone,
    load_pretrained_model,
    random_init_model,
)
from dino_mx.models.head import DINOHead, build_head
from dino_mx.models.multicrop import MultiCropModel, MultiCropOutput

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Backbone",
    "DINOHead",
    "MultiCropModel",
    "MultiCropOutput",
    "adapt_input_channels",
    "build_adapter",
    "build_backbone",
    "build_head",
    "build_seeded_backbone",
    "load_pretrained_model",
    "random_init_model",
]
