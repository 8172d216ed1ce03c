"""Self-supervised losses: DINO (CLS tokens), iBOT (masked patches), KoLeo, and centring."""

from dino_mx.losses.centering import CENTERINGS, sinkhorn_knopp
from dino_mx.losses.dino import DINOLoss
from dino_mx.losses.ibot import iBOTPatchLoss
from dino_mx.losses.koleo import KoLeoLoss

__all__ = ["CENTERINGS", "DINOLoss", "KoLeoLoss", "iBOTPatchLoss", "sinkhorn_knopp"]
