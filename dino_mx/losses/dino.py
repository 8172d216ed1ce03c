"""DINO self-distillation loss on CLS-token prototypes (Caron et al., ICCV 2021).

The teacher's global-view outputs are centred and sharpened by a low temperature — with an EMA
centre (DINO) or Sinkhorn-Knopp (DINOv2, Oquab et al. 2023), see
:mod:`dino_mx.losses.centering` — and the student's outputs over every view are matched to them
by cross-entropy, over cross-view pairs only (a view never predicts itself).
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


class DINOLoss(CenteredLoss):
    """Cross-entropy between sharpened, centred teacher and student prototype distributions.

    Args:
        out_dim: Number of prototypes K (the head's output width).
        student_temp: Student softmax temperature (DINO: 0.1).
        center_momentum: EMA momentum of the teacher centre (DINO: 0.9).
        centering: ``softmax_center`` (DINO's EMA centre) or ``sinkhorn_knopp`` (DINOv2's
            option: 3 Sinkhorn-Knopp iterations over the teacher views of the global batch).

    The centre is a buffer of shape (1, K) so it is saved with the module's state dict and
    averaged across processes when ``torch.distributed`` is initialised. Sinkhorn-Knopp keeps
    it (unused, unchanged) so checkpoints have the same keys either way.
    """

    def teacher_probs(self, teacher_out: list[Tensor], teacher_temp: float) -> list[Tensor]:
        """Centre and sharpen teacher logits into targets, each (B, K) with rows summing to 1.

        ``softmax_center``: softmax((t - c) / teacher_temp) per view. ``sinkhorn_knopp``: one
        :func:`~dino_mx.losses.sinkhorn_knopp` over the views stacked, (n_views * B, K), then
        split back per view.
        """
        if self.centering == "sinkhorn_knopp":
            batch = teacher_out[0].shape[0]
            return list(sinkhorn_knopp(torch.cat(teacher_out), teacher_temp).split(batch))
        return [softmax_center(t, self.center, teacher_temp) for t in teacher_out]

    def forward(
        self, student_out: list[Tensor], teacher_out: list[Tensor], teacher_temp: float
    ) -> Tensor:
        """Average cross-view cross-entropy, then update the centre.

        Args:
            student_out: One (B, K) logit tensor per student view: the global views first, in the
                same order as ``teacher_out``, then the local views.
            teacher_out: One (B, K) logit tensor per teacher (global) view.
            teacher_temp: Teacher temperature for this step (scheduled outside the loss).

        Returns:
            Scalar loss: mean over (teacher view, student view) pairs with different indices of
            the batch-mean of ``sum_k -q_k log p_k``.
        """
        if not student_out or not teacher_out:
            raise ValueError("student_out and teacher_out must be non-empty lists of tensors")
        if len(teacher_out) > len(student_out):
            raise ValueError(
                f"got {len(teacher_out)} teacher views but only {len(student_out)} student views; "
                "the teacher's views must be the student's first views"
            )
        shapes = {tuple(t.shape) for t in [*student_out, *teacher_out]}
        if len(shapes) != 1 or next(iter(shapes))[-1] != self.out_dim:
            raise ValueError(f"every view must be (B, {self.out_dim}); got shapes {sorted(shapes)}")
        if teacher_temp <= 0:
            raise ValueError(f"teacher_temp must be positive, got {teacher_temp}")

        teacher_out = [t.detach() for t in teacher_out]
        targets = self.teacher_probs(teacher_out, teacher_temp)
        log_probs = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]

        total = student_out[0].new_zeros((), dtype=torch.float32)
        n_pairs = 0
        for iq, q in enumerate(targets):
            for iv, log_p in enumerate(log_probs):
                if iv == iq:
                    continue  # same view: skip, DINO only matches different views
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                n_pairs += 1
        if n_pairs == 0:
            raise ValueError("need at least two views to form a cross-view pair")
        if self.centering == "softmax_center":
            self.update_center(teacher_out)
        return total / n_pairs

    @torch.no_grad()
    def update_center(self, teacher_out: list[Tensor]) -> None:
        """center <- m * center + (1 - m) * mean of teacher logits over all views and processes."""
        logits = torch.cat(teacher_out)  # (n_views * B, K)
        update_ema_center(self.center, logits, self.center_momentum)
