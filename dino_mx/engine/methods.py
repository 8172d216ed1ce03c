"""Training methods: the loss of one micro-batch, given the student, the teacher and the batch.

The trainer is method-agnostic. A :class:`Method` says how the backbone is prepared, which
network the student is, what the data transform adds, which loss state is checkpointed, and
computes the losses:

- ``dinov1`` — DINO (Caron et al., ICCV 2021): the CLS self-distillation loss over multi-crop.
- ``dinov2`` — DINOv2 (Oquab et al., 2023): the same CLS loss, plus the iBOT masked-patch loss
  (Zhou et al., ICLR 2022) on block-masked global crops, plus the KoLeo regulariser
  (Sablayrolles et al., ICLR 2019) on the student's CLS features.

Both work with any backbone (ViT or DINOv2, pretrained or not): cross-training is a config choice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from dino_mx.config import MethodConfig
from dino_mx.data import MaskedCrops
from dino_mx.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss
from dino_mx.models import Backbone, MaskedMultiCropModel, MultiCropModel, build_head

N_GLOBAL = 2  # global crops per image, the first crops of a sample (dino_mx.data.MultiCrop)


@dataclass
class MethodOutput:
    """One micro-batch's result.

    Attributes:
        loss: The weighted total, to backpropagate.
        terms: Each loss unweighted, detached; logged as ``loss/<name>``.
        monitors: Collapse monitors of the teacher (when asked for).
        crops: The micro-batch's views, global first, each (B, C, H, W).
        projected: With ``Method.project``: the student's CLS features of every view through
            the distillation projector, each (B, D_t), in crop order; else empty.
    """

    loss: Tensor
    terms: dict[str, Tensor]
    monitors: dict[str, float] = field(default_factory=dict)
    crops: list[Tensor] = field(default_factory=list)
    projected: list[Tensor] = field(default_factory=list)


@torch.no_grad()
def teacher_entropies(probs: list[Tensor]) -> dict[str, float]:
    """Collapse monitors of the teacher's (B, K) target distributions.

    ``teacher_entropy``: the mean per-sample entropy (log K when uniform: collapse to uniform).
    ``teacher_batch_entropy``: the entropy of the batch-mean distribution (0 when every sample
    picks one prototype).
    """
    p = torch.cat(probs).float()  # (n_views * B, K)
    per_sample = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    mean = p.mean(0)
    batch = -(mean * torch.log(mean.clamp_min(1e-12))).sum()
    return {"teacher_entropy": per_sample.item(), "teacher_batch_entropy": batch.item()}


class Method(ABC):
    """A self-supervised method. Attribute ``losses``: the loss module(s) whose state (the
    teacher centres) is checkpointed as ``loss``. ``project``: set by the trainer when a
    distillation teacher needs the student's projected features (``MethodOutput.projected``)."""

    name: str
    losses: nn.Module
    project: bool = False

    def __init__(self, cfg: MethodConfig | DictConfig):
        self.cfg = cfg

    @abstractmethod
    def prepare_backbone(self, backbone: Backbone) -> None:
        """Adjust the backbone before the adapter is applied (mask token on or frozen)."""

    @abstractmethod
    def build_student(self, backbone: Backbone, projector: nn.Module | None = None) -> nn.Module:
        """The student network around ``backbone`` (its heads built here), holding the
        distillation ``projector`` when there is one."""

    def wrap_transform(self, transform: Callable, backbone: Backbone, global_size: int) -> Any:
        """The per-sample data transform (the multi-crop one by default)."""
        return transform

    def map_crops(self, batch: Any, fn: Callable[[list[Tensor]], list[Tensor]]) -> Any:
        """``batch`` with its list of crops replaced by ``fn(crops)``; a dinov1 batch is the
        list itself. Lets the trainer augment whole batches (``augment.backend=batched``)."""
        return fn(batch)

    @abstractmethod
    def __call__(
        self, student: nn.Module, teacher: nn.Module, batch: Any, teacher_temp: float, monitor: bool
    ) -> MethodOutput:
        """Losses of one micro-batch; ``monitor`` asks for :func:`teacher_entropies`."""

    def state_monitors(self) -> dict[str, float]:
        """Scalars of the loss state worth logging (centre norms)."""
        return {}


class DINOv1(Method):
    """DINO: cross-view CLS self-distillation (Caron et al., 2021). Batches: lists of crops."""

    name = "dinov1"

    def __init__(self, cfg: MethodConfig | DictConfig):
        super().__init__(cfg)
        if cfg.ibot.weight or cfg.koleo_weight:
            raise ValueError(
                "method=dinov1 has no iBOT or KoLeo loss: use method=dinov2, or set "
                "method.ibot.weight=0 and method.koleo_weight=0"
            )
        self.loss = DINOLoss(cfg.head.out_dim, cfg.student_temp, cfg.center_momentum, cfg.centering)
        self.losses = self.loss

    def prepare_backbone(self, backbone: Backbone) -> None:
        # DINOv1 never masks patches: a backbone's mask token would be an unused parameter
        # (an error under DDP), so it is frozen rather than trained by nothing.
        for name, p in backbone.named_parameters():
            if name.endswith("mask_token"):
                p.requires_grad_(False)

    def build_student(self, backbone: Backbone, projector: nn.Module | None = None) -> nn.Module:
        return MultiCropModel(backbone, build_head(self.cfg.head, backbone.embed_dim), projector)

    def __call__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        batch: list[Tensor],
        teacher_temp: float,
        monitor: bool,
    ) -> MethodOutput:
        with torch.no_grad():
            teacher_out = teacher(batch[:N_GLOBAL])  # global views only
        monitors = {}
        if monitor:
            monitors = teacher_entropies(self.loss.teacher_probs(teacher_out, teacher_temp))
        out = student(batch, project=self.project)
        logits, projected = out if self.project else (out, [])
        loss = self.loss(logits, teacher_out, teacher_temp)
        return MethodOutput(loss, {"dino": loss.detach()}, monitors, batch, projected)

    def state_monitors(self) -> dict[str, float]:
        if self.cfg.centering != "softmax_center":
            return {}
        return {"center_norm": self.loss.center.norm().item()}


class DINOv2(Method):
    """DINOv2: DINO + iBOT + KoLeo (Oquab et al., 2023).

    Batches are ``(crops, masks)`` from :class:`~dino_mx.data.MaskedCrops`, masks (B, 2, N).
    The total is ``dino_weight * dino + ibot.weight * ibot + koleo_weight * koleo``, with KoLeo
    averaged over the global crops (each crop's batch apart: two crops of one image are not
    pushed apart). The iBOT head is the DINO head unless ``ibot.separate_head``.
    """

    name = "dinov2"

    def __init__(self, cfg: MethodConfig | DictConfig):
        super().__init__(cfg)
        ibot = cfg.ibot
        ibot_dim = ibot.head.out_dim if ibot.separate_head else cfg.head.out_dim
        temp, momentum = cfg.student_temp, cfg.center_momentum
        self.dino = DINOLoss(cfg.head.out_dim, temp, momentum, cfg.centering)
        self.ibot = iBOTPatchLoss(ibot_dim, temp, momentum, cfg.centering)
        self.koleo = KoLeoLoss()
        self.losses = nn.ModuleDict({"dino": self.dino, "ibot": self.ibot})

    def prepare_backbone(self, backbone: Backbone) -> None:
        backbone.enable_mask_token()  # the model's own, else one of the wrapper; it trains

    def build_student(self, backbone: Backbone, projector: nn.Module | None = None) -> nn.Module:
        head = build_head(self.cfg.head, backbone.embed_dim)
        ibot = self.cfg.ibot
        ibot_head = build_head(ibot.head, backbone.embed_dim) if ibot.separate_head else None
        return MaskedMultiCropModel(backbone, head, ibot_head, N_GLOBAL, projector)

    def map_crops(
        self, batch: tuple[list[Tensor], Tensor], fn: Callable[[list[Tensor]], list[Tensor]]
    ) -> tuple[list[Tensor], Tensor]:
        crops, masks = batch
        return fn(crops), masks

    def wrap_transform(
        self, transform: Callable, backbone: Backbone, global_size: int
    ) -> MaskedCrops:
        side = global_size // backbone.patch_size  # patches per side of a global crop
        ibot = self.cfg.ibot
        return MaskedCrops(
            transform,
            (side, side),
            N_GLOBAL,
            list(ibot.mask_ratio_min_max),
            ibot.mask_sample_probability if ibot.weight > 0 else 0.0,
        )

    def __call__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        batch: tuple[list[Tensor], Tensor],
        teacher_temp: float,
        monitor: bool,
    ) -> MethodOutput:
        crops, masks = batch
        masks = masks.transpose(0, 1).flatten(0, 1)  # (B, 2, N) -> (2 * B, N), crop by crop
        with torch.no_grad():
            t = teacher(crops[:N_GLOBAL], masks, mask_inputs=False)  # teacher: unmasked crops
        monitors = {}
        if monitor:
            monitors = teacher_entropies(self.dino.teacher_probs(t.cls_logits, teacher_temp))
        s = student(crops, masks, mask_inputs=True, project=self.project)
        terms = {
            "dino": self.dino(s.cls_logits, t.cls_logits, teacher_temp),
            "ibot": self.ibot(s.patch_logits, t.patch_logits, masks, teacher_temp),
            "koleo": torch.stack([self.koleo(f) for f in s.cls_features[:N_GLOBAL]]).mean(),
        }
        cfg = self.cfg
        weights = {"dino": cfg.dino_weight, "ibot": cfg.ibot.weight, "koleo": cfg.koleo_weight}
        loss = sum(weights[k] * v for k, v in terms.items())
        detached = {k: v.detach() for k, v in terms.items()}
        return MethodOutput(loss, detached, monitors, crops, s.projected)

    def state_monitors(self) -> dict[str, float]:
        if self.cfg.centering != "softmax_center":
            return {}
        return {
            "center_norm": self.dino.center.norm().item(),
            "ibot_center_norm": self.ibot.center.norm().item(),
        }


METHODS: dict[str, type[Method]] = {"dinov1": DINOv1, "dinov2": DINOv2}


def build_method(cfg: MethodConfig | DictConfig) -> Method:
    """Builder: the ``method`` config group to a :class:`Method`."""
    if cfg.name not in METHODS:
        raise ValueError(f"unknown method '{cfg.name}'; valid choices: {', '.join(METHODS)}")
    return METHODS[cfg.name](cfg)
