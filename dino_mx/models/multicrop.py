"""Backbone + head(s) applied to a list of crops of several resolutions.

:class:`MultiCropModel` is DINO's wrapper: prototype logits of every crop's CLS token.
:class:`MaskedMultiCropModel` is DINOv2's: the same, plus the CLS features (for KoLeo) and the
iBOT head's logits of selected patch tokens of the global crops, which the student sees masked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dino_mx.models.backbone import Backbone
from dino_mx.models.head import DINOHead


class MultiCropModel(nn.Module):
    """Runs crops grouped by resolution: one backbone call per resolution, one head call in all.

    Crops of the same size must be consecutive (global crops first, then local ones), which is
    how :class:`dino_mx.data.MultiCrop` orders them.

    ``projector`` (distillation, :mod:`dino_mx.models.projector`) maps the CLS features to a
    frozen teacher's space. It is a child of this module, and runs inside ``forward``, so DDP
    and FSDP see it as part of the student.
    """

    def __init__(self, backbone: Backbone, head: DINOHead, projector: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.projector = projector

    def forward(
        self, crops: list[Tensor], project: bool = False
    ) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
        """Args:
            crops: Each (B, C, H_i, W_i).
            project: Also return the projected CLS features (needs a ``projector``).

        Returns:
            One (B, K) logit tensor per crop; with ``project``, also one (B, D_t) projected
            feature tensor per crop.
        """
        if not crops:
            raise ValueError("need at least one crop")
        batch = crops[0].shape[0]
        cls_all = encode_cls(self.backbone, crops)  # (n_crops * B, D)
        logits = list(self.head(cls_all).split(batch))  # (B, K) each
        if not project:
            return logits
        return logits, list(_project(self.projector, cls_all).split(batch))


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


def _project(projector: nn.Module | None, features: Tensor) -> Tensor:
    """(N, D) student features -> (N, D_t) through the distillation projector."""
    if projector is None:
        raise ValueError("project=True needs a projector (distill=teacher builds one)")
    return projector(features)


@dataclass
class MaskedMultiCropOutput:
    """What :class:`MaskedMultiCropModel` returns.

    Attributes:
        cls_logits: One (B, K) DINO-head logit tensor per crop, in crop order.
        cls_features: One (B, D) backbone CLS feature per crop (after the final norm).
        patch_logits: (M, K') iBOT-head logits of the selected patches of the global crops,
            in ``masks.nonzero()`` order; M = ``masks.sum()``.
        projected: With ``project=True``: one (B, D_t) projected CLS feature per crop.
    """

    cls_logits: list[Tensor]
    cls_features: list[Tensor]
    patch_logits: Tensor
    projected: list[Tensor] = field(default_factory=list)


class MaskedMultiCropModel(nn.Module):
    """DINOv2's student / teacher network: CLS prototypes of every crop and patch prototypes of
    the masked positions of the global crops (Oquab et al. 2023; iBOT, Zhou et al. 2022).

    Args:
        backbone: The encoder; call ``backbone.enable_mask_token()`` first for a student.
        head: DINO head for the CLS tokens.
        ibot_head: A separate head for the patch tokens (``ibot.separate_head``), or None to
            share ``head`` (DINOv2's default). A shared head runs once on CLS and patch tokens.
        n_global: Number of global crops, the first crops of every list.
        projector: The distillation projection of the CLS features (see :class:`MultiCropModel`).
    """

    def __init__(
        self,
        backbone: Backbone,
        head: DINOHead,
        ibot_head: DINOHead | None = None,
        n_global: int = 2,
        projector: nn.Module | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.ibot_head = ibot_head
        self.n_global = n_global
        self.projector = projector

    def forward(
        self, crops: list[Tensor], masks: Tensor, mask_inputs: bool = True, project: bool = False
    ) -> MaskedMultiCropOutput:
        """Encode the crops; the global ones in one backbone call, the others by resolution.

        Args:
            crops: ``n_global`` global crops (B, C, H, W) first, then any local crops.
            masks: (n_global * B, N) bool, global crops stacked crop by crop (the order of
                ``torch.cat(crops[:n_global])``): the patches whose tokens go to the iBOT head.
            mask_inputs: True for the student: those patches are replaced by the mask token
                before the encoder. False for the teacher, which sees the whole crops.
            project: Also compute the projected CLS features (needs a ``projector``).

        Returns:
            :class:`MaskedMultiCropOutput`.
        """
        if len(crops) < self.n_global:
            raise ValueError(f"need at least {self.n_global} (global) crops, got {len(crops)}")
        batch = crops[0].shape[0]
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
        projected = list(_project(self.projector, cls_all).split(batch)) if project else []
        return MaskedMultiCropOutput(
            list(cls_logits.split(batch)), list(cls_all.split(batch)), patch_logits, projected
        )
