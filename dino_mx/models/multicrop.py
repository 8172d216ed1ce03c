"""Backbone + head(s) applied to a list of crops of several resolutions.

:class:`MultiCropModel` is the student and the EMA teacher network of both methods: prototype
logits of every crop's CLS token (DINO) and, when patch masks are given, the (iBOT) head's
logits of the masked patch tokens of the global crops, which the student sees masked (DINOv2).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dino_mx.data.views import N_GLOBAL
from dino_mx.models.backbone import Backbone
from dino_mx.models.head import DINOHead


@dataclass
class MultiCropOutput:
    """What :class:`MultiCropModel` returns, for the objective's terms.

    Attributes:
        cls_logits: One (B, K) DINO-head logit tensor per crop, in crop order.
        cls_features: (n_crops * B, D) backbone CLS features (after the final norm), crop by
            crop; ``.split(B)`` gives one per crop.
        patch_logits: (M, K') head logits of the masked patches of the global crops, in
            ``masks.nonzero()`` order (M = ``masks.sum()``); None when no masks were given.
    """

    cls_logits: list[Tensor]
    cls_features: Tensor
    patch_logits: Tensor | None = None


def encode_cls(backbone: nn.Module, crops: list[Tensor]) -> Tensor:
    """CLS features of crops, one backbone call per run of same-size crops.

    Args:
        backbone: Returns ``(cls, patches)`` for a (N, C, H, W) batch (:class:`Backbone`).
        crops: Each (B, C, H_i, W_i); crops of one size consecutive (global first).

    Returns:
        (n_crops * B, D), crop by crop.
    """
    if not crops:
        raise ValueError("need at least one crop")
    features = [
        backbone(torch.cat(list(group)))[0]  # (n_group * B, D)
        for _, group in itertools.groupby(crops, key=lambda c: tuple(c.shape[-2:]))
    ]
    return torch.cat(features)


class MultiCropModel(nn.Module):
    """Runs crops grouped by resolution: one backbone call per resolution, one head call in all.

    Crops of the same size must be consecutive (global crops first, then local ones), which is
    how :class:`dino_mx.data.MultiCrop` orders them. With ``masks`` (DINOv2; iBOT, Zhou et al.
    2022) the ``n_global`` global crops go through the backbone together, their masked patches
    replaced by the mask token when ``mask_inputs`` (the student; the teacher sees whole crops),
    and the tokens at the masked positions go to the iBOT head.

    Args:
        backbone: The encoder; a DINOv2 student calls ``backbone.enable_mask_token()`` first.
        head: DINO head for the CLS tokens.
        ibot_head: A separate head for the patch tokens (``ibot.separate_head``), or None to
            share ``head`` (DINOv2's default). A shared head runs once on CLS and patch tokens.
        n_global: Number of global crops, the first crops of every list.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: DINOHead,
        ibot_head: DINOHead | None = None,
        n_global: int = N_GLOBAL,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.ibot_head = ibot_head
        self.n_global = n_global

    def forward(
        self, crops: list[Tensor], masks: Tensor | None = None, mask_inputs: bool = True
    ) -> MultiCropOutput:
        """Args:
        crops: Each (B, C, H_i, W_i), ``n_global`` global crops first.
        masks: (n_global * B, N) bool, the global crops' masks stacked crop by crop (the
            order of ``torch.cat(crops[:n_global])``), or None (DINOv1: no patch logits).
        mask_inputs: Replace the masked patches by the mask token before the encoder.
        """
        if not crops:
            raise ValueError("need at least one crop")
        batch = crops[0].shape[0]
        if masks is None:
            cls_all = encode_cls(self.backbone, crops)  # (n_crops * B, D)
            return MultiCropOutput(list(self.head(cls_all).split(batch)), cls_all)
        if len(crops) < self.n_global:
            raise ValueError(f"need at least {self.n_global} (global) crops, got {len(crops)}")
        cls, patches = self.backbone(
            torch.cat(crops[: self.n_global]), masks if mask_inputs else None
        )  # (n_global * B, D), (n_global * B, N, D)
        local = crops[self.n_global :]
        cls_all = torch.cat([cls, encode_cls(self.backbone, local)]) if local else cls
        selected = patches[masks]  # (M, D)
        if self.ibot_head is None:
            logits = self.head(torch.cat([cls_all, selected]))  # one head call for both
            cls_logits, patch_logits = logits[: len(cls_all)], logits[len(cls_all) :]
        else:
            cls_logits, patch_logits = self.head(cls_all), self.ibot_head(selected)
        return MultiCropOutput(list(cls_logits.split(batch)), cls_all, patch_logits)
