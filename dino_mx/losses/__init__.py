"""Self-supervised losses."""

from dino_mx.losses.dino import DINOLoss

__all__ = ["DINOLoss"]
