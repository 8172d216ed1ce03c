"""The objective's terms: each loss of :mod:`dino_mx.losses` read off a multi-crop output.

Each term subclasses its loss, so the objective's state dict names a centre ``dino.center`` /
``ibot.center`` and the loss's own tests cover the arithmetic; the term only says which tensors
of the student's and teacher's outputs the loss compares.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dino_mx.data.views import N_GLOBAL, Views, view_indices
from dino_mx.losses.dino import DINOLoss
from dino_mx.losses.distill import DistillLoss
from dino_mx.losses.ibot import iBOTPatchLoss
from dino_mx.losses.koleo import KoLeoLoss
from dino_mx.losses.objective import Term
from dino_mx.models.multicrop import MultiCropOutput, encode_cls


class DINOTerm(DINOLoss, Term):
    """DINO's cross-view loss of the CLS prototypes (every student crop vs the teacher's global
    crops); its teacher targets are the collapse monitors."""

    def compute(
        self, student: MultiCropOutput, teacher: MultiCropOutput, views: Views, teacher_temp: float
    ) -> Tensor:
        return self(student.cls_logits, teacher.cls_logits, teacher_temp)

    def targets(self, teacher: MultiCropOutput, teacher_temp: float) -> list[Tensor]:
        return self.teacher_probs(teacher.cls_logits, teacher_temp)

    def state_monitors(self) -> dict[str, float]:
        if self.centering != "softmax_center":
            return {}
        return {"center_norm": self.center.norm().item()}


class IBOTTerm(iBOTPatchLoss, Term):
    """iBOT's loss of the masked patch prototypes of the global crops (needs ``views.masks``)."""

    def compute(
        self, student: MultiCropOutput, teacher: MultiCropOutput, views: Views, teacher_temp: float
    ) -> Tensor:
        if student.patch_logits is None or teacher.patch_logits is None:
            raise ValueError("the iBOT term needs patch masks: method=dinov2 makes them")
        return self(student.patch_logits, teacher.patch_logits, views.flat_masks, teacher_temp)

    def state_monitors(self) -> dict[str, float]:
        if self.centering != "softmax_center":
            return {}
        return {"ibot_center_norm": self.center.norm().item()}


class KoLeoTerm(KoLeoLoss, Term):
    """KoLeo on the student's CLS features, one global crop's batch at a time, averaged: two
    crops of one image are not pushed apart."""

    def compute(
        self, student: MultiCropOutput, teacher: MultiCropOutput, views: Views, teacher_temp: float
    ) -> Tensor:
        features = student.cls_features.split(views.batch_size)[:N_GLOBAL]  # (B, D) each
        return torch.stack([self(f) for f in features]).mean()


class DistillTerm(Term):
    """Distillation from a frozen teacher: the student's CLS features of ``student_views``
    through a learned projection against the teacher's CLS features of ``teacher_views``
    (:mod:`dino_mx.losses.distill`).

    The term owns the projector (trained with the student, checkpointed with the objective).
    The frozen teacher is held outside the module tree on purpose: no optimiser, EMA update,
    DDP / FSDP wrapper or checkpoint ever sees it.

    Args:
        teacher: The frozen backbone, on the training device and in its precision.
        projector: Student width -> teacher width (:mod:`dino_mx.models.projector`).
        loss: The feature loss.
        teacher_views, student_views: ``global``, ``local`` or ``all``.
    """

    self_distillation = False

    def __init__(
        self,
        teacher: nn.Module,
        projector: nn.Module,
        loss: DistillLoss,
        teacher_views: str,
        student_views: str,
    ):
        super().__init__()
        for which in (teacher_views, student_views):
            view_indices(which, N_GLOBAL + 1)  # validates the name
        self.projector, self.loss = projector, loss
        self.teacher_views, self.student_views = teacher_views, student_views
        self._frozen = (teacher,)  # a tuple: not registered as a child module

    @property
    def teacher(self) -> nn.Module:
        return self._frozen[0]

    @torch.no_grad()
    def teacher_features(self, crops: list[Tensor]) -> list[Tensor]:
        """The teacher's (B, D_t) CLS features of each crop, one backbone call per resolution."""
        return list(encode_cls(self.teacher, crops).split(crops[0].shape[0]))

    def compute(
        self, student: MultiCropOutput, teacher: MultiCropOutput, views: Views, teacher_temp: float
    ) -> Tensor:
        projected = self.projector(student.cls_features).split(views.batch_size)  # (B, D_t) each
        crops = views.crops
        targets = self.teacher_features(
            [crops[i] for i in view_indices(self.teacher_views, len(crops))]
        )
        chosen = [projected[i] for i in view_indices(self.student_views, len(crops))]
        return self.loss(chosen, targets)
