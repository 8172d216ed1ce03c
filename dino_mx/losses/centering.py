"""Teacher centring: turn teacher logits into the targets of a self-distillation loss.

Two ways to keep the teacher from collapsing onto one prototype, shared by the DINO CLS loss
(:class:`~dino_mx.losses.DINOLoss`) and the iBOT patch loss
(:class:`~dino_mx.losses.iBOTPatchLoss`):

- ``softmax_center`` (DINO, Caron et al. 2021): subtract an EMA of the mean teacher logit, then a
  sharp softmax. The centre is state (a buffer of the loss) and is updated after each step.
- ``sinkhorn_knopp`` (SwAV, Caron et al. 2020; used by DINOv2, Oquab et al. 2023): a few
  Sinkhorn-Knopp iterations make the batch's assignments equipartitioned over the prototypes.
  Stateless.

Every collective is guarded by ``dist.is_initialized()``: the same code runs in one process and
under ``torch.distributed``, where the statistics cover the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

CENTERINGS = ("softmax_center", "sinkhorn_knopp")


def check_centering(centering: str) -> str:
    """``centering`` if it is one of :data:`CENTERINGS`, else ``ValueError`` listing them."""
    if centering not in CENTERINGS:
        raise ValueError(f"unknown centering '{centering}'; valid choices: {', '.join(CENTERINGS)}")
    return centering


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


MAX = dist.ReduceOp.MAX


def _all_reduce(t: Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> Tensor:
    """Sum (or ``op``) of ``t`` over every process, in place; ``t`` itself in one process."""
    if _distributed():
        dist.all_reduce(t, op=op)
    return t


def softmax_center(logits: Tensor, center: Tensor, teacher_temp: float) -> Tensor:
    """DINO's targets ``softmax((logits - center) / teacher_temp)`` in float32.

    Args:
        logits: (..., K) teacher logits.
        center: (1, K) EMA centre.
        teacher_temp: Sharpening temperature (> 0).

    Returns:
        (..., K) probabilities.
    """
    return F.softmax((logits.float() - center) / teacher_temp, dim=-1)


@torch.no_grad()
def update_ema_center(center: Tensor, logits: Tensor, momentum: float) -> None:
    """``center <- m * center + (1 - m) * mean(logits)``, in place, over every process.

    Args:
        center: (1, K) buffer.
        logits: (M, K) teacher logits of this process (M may differ between processes, and be
            0). When no process has a row, the centre is left as it is.
        momentum: EMA momentum m in [0, 1).
    """
    logits = logits.float()
    batch_sum = _all_reduce(logits.sum(dim=0, keepdim=True))  # (1, K)
    count = _all_reduce(torch.tensor(float(logits.shape[0]), device=logits.device))
    batch_center = batch_sum / count.clamp_min(1.0)
    updated = center.mul(momentum).add_(batch_center, alpha=1 - momentum)
    center.copy_(torch.where(count > 0, updated, center))  # no host sync for the empty case


def _logsumexp_over_rows(x: Tensor) -> Tensor:
    """(B, K) -> (1, K): log of each column's sum of exp over the rows of every process."""
    empty = x.new_full((1, x.shape[1]), float("-inf"))
    top = _all_reduce(x.max(dim=0, keepdim=True).values if x.shape[0] else empty, MAX)
    total = _all_reduce((x - top).exp().sum(dim=0, keepdim=True))  # >= 1 where the max is
    return top + total.log()


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
    """Sinkhorn-Knopp assignments of B samples to K prototypes (SwAV; DINOv2 Sec. 4).

    Starts from ``Q = exp(teacher_logits / teacher_temp)`` and alternately rescales each
    prototype (column) to the same total and each sample (row) to total 1, ``n_iterations``
    times; B counts the rows of every process. This is DINOv2's ``sinkhorn_knopp_teacher``
    computed in log space: the same numbers, but no overflow or 0/0 at sharp temperatures
    (0.04 turns a logit of 4 into e^100).

    Convention of the result: **each row (one sample) sums to 1** — a distribution over the K
    prototypes, used as the sample's target like a softmax — and **each column (one
    prototype) sums to B/K** over the global batch: the batch is spread evenly over the
    prototypes. The rows are exact (the last rescaling is per sample); the columns hold to the
    convergence reached in ``n_iterations`` (DINOv2 uses 3).

    Args:
        teacher_logits: (B, K) logits of this process (B may be 0 on some processes).
        teacher_temp: Temperature (> 0).
        n_iterations: Rounds of prototype then sample normalisation (>= 1).

    Returns:
        (B, K) float32 assignments, no gradient (empty when B is 0).
    """
    if teacher_logits.ndim != 2:
        raise ValueError(f"teacher_logits must be (B, K), got shape {tuple(teacher_logits.shape)}")
    if teacher_temp <= 0:
        raise ValueError(f"teacher_temp must be positive, got {teacher_temp}")
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    log_q = teacher_logits.float() / teacher_temp  # (B, K)
    # DINOv2 also divides by the total, by K and by B: uniform factors that the next
    # normalisation removes again, so only the two alternating normalisations remain.
    for _ in range(n_iterations):
        log_q = log_q - _logsumexp_over_rows(log_q)  # each prototype: the same total
        log_q = log_q - log_q.logsumexp(dim=1, keepdim=True)  # each sample: total 1
    return log_q.exp()


class CenteredLoss(nn.Module):
    """Base of the self-distillation losses: student temperature, centring choice and a (1, K)
    EMA centre buffer (saved in the state dict; unused and unchanged under Sinkhorn-Knopp, so
    checkpoints have the same keys either way).

    Args:
        out_dim: Number of prototypes K.
        student_temp: Student softmax temperature.
        center_momentum: EMA momentum of the teacher centre.
        centering: One of :data:`CENTERINGS`.
    """

    center: Tensor

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: str = "softmax_center",
    ):
        super().__init__()
        if out_dim <= 0:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = check_centering(centering)
        self.register_buffer("center", torch.zeros(1, out_dim))
