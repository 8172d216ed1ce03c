"""The learned projection that aligns a student's features with a distillation teacher's."""

from __future__ import annotations

from torch import nn


def build_projector(in_dim: int, out_dim: int, hidden_dim: int = 0) -> nn.Module:
    """Student width -> teacher width: ``Linear`` (``hidden_dim`` 0) or ``Linear-GELU-Linear``.

    The projection lives on the student side so the teacher's space stays a fixed target
    (:mod:`dino_mx.losses.distill`): a student of width 192 learns to predict a 384-wide teacher
    without either network changing width. It is built even when the widths agree, so the
    student's own feature space is not forced to coincide with the teacher's.

    Args:
        in_dim: The student backbone's width D_s.
        out_dim: The teacher's width D_t.
        hidden_dim: Width of the hidden layer; 0 for a single linear map.
    """
    if hidden_dim < 0:
        raise ValueError(f"distill.projector_hidden must be >= 0, got {hidden_dim}")
    if hidden_dim == 0:
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    else:
        layers = [nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)]
    projector = nn.Sequential(*layers)
    for layer in projector:
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
    return projector
