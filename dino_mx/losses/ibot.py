"""iBOT masked-patch self-distillation loss (Zhou et al., ICLR 2022), as used by DINOv2
(Oquab et al., 2023).

The student sees a global crop with some patches replaced by a mask token; the teacher sees the
whole crop. At each masked position the student's patch prototypes are matched to the
teacher's centred, sharpened ones by cross-entropy. Only masked positions count: predicting a
visible patch from itself would teach nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dino_mx.losses.centering import (
    CenteredLoss,
    sinkhorn_knopp,
    softmax_center,
    update_ema_center,
)


class iBOTPatchLoss(CenteredLoss):  # noqa: N801 - the paper's spelling, as in DINOv2
    """Cross-entropy between teacher and student patch prototypes at masked positions.

    Per image, the cross-entropy is averaged over its masked patches; the loss is the mean of
    that over all images, an image without masked patches counting as 0 (DINOv2's weighting:
    each masked image weighs the same whatever its mask ratio).

    Args:
        out_dim: Number of patch prototypes K (the iBOT head's output width).
        student_temp: Student softmax temperature (DINOv2: 0.1).
        center_momentum: EMA momentum of the teacher centre (DINOv2: 0.9).
        centering: ``softmax_center`` (EMA centre of the masked patches' teacher logits) or
            ``sinkhorn_knopp`` (over the masked patches of the global batch).

    The centre is a (1, K) buffer of its own, separate from the CLS loss's: patch and CLS
    prototypes have different statistics even when they share a head.
    """

    def teacher_probs(self, teacher_patches: Tensor, teacher_temp: float) -> Tensor:
        """(M, K) teacher logits of the masked patches -> (M, K) targets, rows summing to 1."""
        if self.centering == "sinkhorn_knopp":
            return sinkhorn_knopp(teacher_patches, teacher_temp)
        return softmax_center(teacher_patches, self.center, teacher_temp)

    def forward(
        self, student_patches: Tensor, teacher_patches: Tensor, masks: Tensor, teacher_temp: float
    ) -> Tensor:
        """Mean over images of the mean over masked patches of ``sum_k -q_k log p_k``.

        Args:
            student_patches: (M, K) student logits of the masked patches, in the order of
                ``masks.nonzero()`` (image by image, patches in raster order) — what
                ``patches[masks]`` gives for (B, N, K) patches; or all the (B, N, K) patch
                logits, from which the masked ones are taken.
            teacher_patches: The teacher's logits at the same positions, same shape as
                ``student_patches``. The teacher saw the unmasked crop.
            masks: (B, N) bool, True where the student's patch was replaced by the mask token;
                M = ``masks.sum()``. B counts images (global crops), N patches per image.
            teacher_temp: Teacher temperature for this step (scheduled outside the loss).

        Returns:
            Scalar loss; exactly 0 (still connected to the graph) when no patch is masked.
            The centre is updated afterwards with the masked teacher logits (softmax_center).
        """
        if masks.ndim != 2 or masks.dtype != torch.bool:
            raise ValueError(f"masks must be a (B, N) bool tensor, got {masks.dtype} {masks.shape}")
        if student_patches.shape != teacher_patches.shape:
            raise ValueError(
                f"student and teacher patches differ: {tuple(student_patches.shape)} vs "
                f"{tuple(teacher_patches.shape)}"
            )
        if teacher_temp <= 0:
            raise ValueError(f"teacher_temp must be positive, got {teacher_temp}")
        if student_patches.ndim == 3:  # (B, N, K): keep the masked positions only
            student_patches, teacher_patches = student_patches[masks], teacher_patches[masks]
        n_masked = int(masks.sum())
        if student_patches.shape != (n_masked, self.out_dim):
            raise ValueError(
                f"expected ({n_masked}, {self.out_dim}) logits for {n_masked} masked patches, got "
                f"{tuple(student_patches.shape)}"
            )
        teacher_patches = teacher_patches.detach()
        targets = self.teacher_probs(teacher_patches, teacher_temp)  # (M, K)
        log_p = F.log_softmax(student_patches.float() / self.student_temp, dim=-1)  # (M, K)
        cross_entropy = torch.sum(-targets * log_p, dim=-1)  # (M,)
        # Each masked patch weighs 1 / (masked patches of its image): a per-image mean.
        per_image = masks.sum(dim=-1, keepdim=True).clamp_min(1).float()  # (B, 1)
        weights = (1.0 / per_image).expand(masks.shape)[masks]  # (M,)
        loss = (cross_entropy * weights).sum() / masks.shape[0]
        if self.centering == "softmax_center":
            update_ema_center(self.center, teacher_patches, self.center_momentum)
        return loss
