"""Backbones, adapters (LoRA, frozen blocks), heads and the multi-crop wrapper."""

from dino_mx.models.adapters import apply_adapter
from dino_mx.models.backbone import (
    Backbone,
    adapt_input_channels,
    build_backbone,
    load_pretrained_model,
    random_init_model,
)
from dino_mx.models.head import DINOHead, build_head
from dino_mx.models.multicrop import MaskedMultiCropModel, MaskedMultiCropOutput, MultiCropModel

__all__ = [
    "Backbone",
    "DINOHead",
    "MaskedMultiCropModel",
    "MaskedMultiCropOutput",
    "MultiCropModel",
    "adapt_input_channels",
    "apply_adapter",
    "build_backbone",
    "build_head",
    "load_pretrained_model",
    "random_init_model",
]
