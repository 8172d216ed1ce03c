"""KoLeo regulariser (Sablayrolles et al., ICLR 2019, "Spreading vectors for similarity
search"), as used by DINOv2 (Oquab et al., 2023) on the student's CLS features.

The Kozachenko-Leonenko estimator of differential entropy grows with the log-distance of each
point to its nearest neighbour; minimising ``-mean(log d_nn)`` spreads the features of a batch
evenly over the unit sphere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KoLeoLoss(nn.Module):
    """``-mean_i log(min_{j != i} ||x_i - x_j||)`` over the L2-normalised rows of a batch.

    Args:
        eps: Smallest nearest-neighbour distance used in the log. Two identical features would
            give ``-log 0``; DINOv2's reference adds 1e-8 to the distance, which vanishes in
            bf16/fp16 and gives ``inf`` there. Here the distance is computed in float32 and
            clamped, so duplicates cost ``-log(eps)`` and pass no gradient through that pair.

    Computed in float32 with autocast off, within this process's batch (as DINOv2: the
    nearest neighbour is not searched across processes).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps

    def forward(self, features: Tensor) -> Tensor:
        """Args: features (B, D), e.g. the CLS tokens of one global crop per image.

        Returns:
            Scalar loss. A batch of one has no neighbour and gives 0.
        """
        if features.ndim != 2:
            raise ValueError(f"features must be (B, D), got shape {tuple(features.shape)}")
        if features.shape[0] < 2:
            return features.new_zeros((), dtype=torch.float32)
        with torch.autocast(features.device.type, enabled=False):
            x = F.normalize(features.float(), p=2, dim=-1)  # (B, D) on the unit sphere
            with torch.no_grad():
                # Unit vectors: the largest dot product is the nearest neighbour.
                dots = x @ x.t()  # (B, B)
                dots.fill_diagonal_(-2.0)  # never one's own neighbour (dots are >= -1)
                nearest = dots.argmax(dim=1)  # (B,)
            sq_dist = (x - x[nearest]).pow(2).sum(dim=-1)  # (B,)
            # -log(d) = -log(d^2) / 2; clamping d^2 keeps duplicates finite, gradient-free.
            return -0.5 * torch.log(sq_dist.clamp_min(self.eps**2)).mean()
