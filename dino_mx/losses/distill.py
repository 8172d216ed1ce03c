"""Knowledge distillation from a frozen teacher's features (DINO-MX, Sec. "distillation").

The teacher is a fixed network, so its output space is a fixed target: the student is trained to
predict it through a learned projection (student width -> teacher width). Unlike DINO's
self-distillation there is no EMA, no centring and no collapse to guard against.

Target space: the teacher's CLS feature after a parameter-free layer norm (zero mean, unit
variance over its D_t entries). Pretrained models' features differ widely in scale and often
share a large constant component; the norm gives every teacher the same scale, so one learning
rate and one ``distill.weight`` fit them all, and cosine similarity is not inflated by the
shared offset.

Losses (``distill.loss``):

- ``cosine`` — ``1 - cos(p, t)``: scale-free; 0 when aligned, 1 when orthogonal.
- ``smooth_l1`` — Huber (beta 1) between ``p`` and ``t``, mean over dimensions.
- ``cross_entropy`` — both onto ``K`` fixed random unit prototypes in teacher space (a frozen,
  seeded "head" the teacher never trains):
  ``H(softmax(cos(t, W) / T_t), softmax(cos(p, W) / T_s))``, DINO's loss with a stable target.

With several views the loss is averaged over every (teacher view, student view) pair, the
same view included: unlike DINO's EMA teacher, this teacher is another network, so matching
it on the very crop the student sees is the most direct signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DISTILL_LOSSES = ("cosine", "smooth_l1", "cross_entropy")


class DistillLoss(nn.Module):
    """Student-to-frozen-teacher feature loss, averaged over view pairs.

    Args:
        kind: ``cosine``, ``smooth_l1`` or ``cross_entropy``.
        teacher_dim: Width D_t of the teacher's features (the projection's output width).
        out_dim: Number of fixed prototypes K (``cross_entropy`` only).
        teacher_temp, student_temp: Softmax temperatures (``cross_entropy`` only).
        seed: Seed of the prototypes, drawn without touching the global RNG.
    """

    def __init__(
        self,
        kind: str,
        teacher_dim: int,
        out_dim: int = 4096,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        if kind not in DISTILL_LOSSES:
            raise ValueError(f"distill.loss '{kind}'; valid choices: {', '.join(DISTILL_LOSSES)}")
        self.kind, self.teacher_dim = kind, teacher_dim
        self.teacher_temp, self.student_temp = teacher_temp, student_temp
        prototypes = None
        if kind == "cross_entropy":
            generator = torch.Generator().manual_seed(seed)
            prototypes = F.normalize(torch.randn(out_dim, teacher_dim, generator=generator), dim=-1)
        # Not in the state dict: the seed recreates it, and checkpoints stay teacher-free.
        self.register_buffer("prototypes", prototypes, persistent=False)

    def target(self, teacher_features: Tensor) -> Tensor:
        """The teacher's (B, D_t) features in the target space: parameter-free layer norm
        (detached: the teacher is a fixed target)."""
        features = teacher_features.detach().float()
        return F.layer_norm(features, (features.shape[-1],))

    def pair_loss(self, projected: Tensor, target: Tensor) -> Tensor:
        """Mean over the batch of the loss between (B, D_t) predictions and (B, D_t) targets."""
        projected = projected.float()
        if self.kind == "cosine":
            return (1 - F.cosine_similarity(projected, target, dim=-1)).mean()
        if self.kind == "smooth_l1":
            return F.smooth_l1_loss(projected, target, beta=1.0)
        w = self.prototypes  # (K, D_t)
        t = F.softmax(F.normalize(target, dim=-1) @ w.T / self.teacher_temp, dim=-1)
        s = F.log_softmax(F.normalize(projected, dim=-1) @ w.T / self.student_temp, dim=-1)
        return -(t * s).sum(-1).mean()

    def forward(self, projected: list[Tensor], teacher_features: list[Tensor]) -> Tensor:
        """Args:
            projected: The student's projected features, one (B, D_t) tensor per student view.
            teacher_features: The teacher's raw features, one (B, D_t) tensor per teacher view.

        Returns:
            Scalar: the mean over every (teacher view, student view) pair.
        """
        if not projected or not teacher_features:
            raise ValueError("distillation needs at least one student and one teacher view")
        width = projected[0].shape[-1]
        if width != self.teacher_dim or teacher_features[0].shape[-1] != self.teacher_dim:
            raise ValueError(
                f"student projection gives {width}-d features, the teacher "
                f"{teacher_features[0].shape[-1]}-d; both must be {self.teacher_dim}"
            )
        targets = [self.target(t) for t in teacher_features]
        losses = [self.pair_loss(p, t) for t in targets for p in projected]
        return torch.stack(losses).mean()
