"""Backbone + head applied to a list of crops of several resolutions."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from dino_mx.models.backbone import Backbone
from dino_mx.models.head import DINOHead


class MultiCropModel(nn.Module):
    """Runs crops grouped by resolution: one backbone call per resolution, one head call in all.

    Crops of the same size must be consecutive (global crops first, then local ones), which is
    how :class:`dino_mx.data.MultiCrop` orders them.
    """

    def __init__(self, backbone: Backbone, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[Tensor]) -> list[Tensor]:
        """Args: crops, each (B, C, H_i, W_i). Returns one (B, K) logit tensor per crop."""
        if not crops:
            raise ValueError("need at least one crop")
        batch = crops[0].shape[0]
        features = []
        for _, group in itertools.groupby(crops, key=lambda c: tuple(c.shape[-2:])):
            cls, _ = self.backbone(torch.cat(list(group)))  # (n_group * B, D)
            features.append(cls)
        logits = self.head(torch.cat(features))  # (n_crops * B, K)
        return list(logits.split(batch))
