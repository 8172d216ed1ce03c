"""The EMA teacher of DINO: a copy of the student updated as m * teacher + (1 - m) * student."""

from __future__ import annotations

import copy

import torch
from torch import nn

from dino_mx.schedules import cosine_schedule


def build_teacher(student: nn.Module, share_frozen: bool = False) -> nn.Module:
    """A frozen copy of ``student``: eval mode, no gradients, same parameter names.

    Args:
        student: The network being trained.
        share_frozen: Give the teacher the student's frozen parameters (``requires_grad``
            False) by reference instead of copies. With LoRA or frozen blocks the frozen base is
            most of the model and never changes, so one copy in memory serves both networks;
            the student's trainable weights (LoRA ``A``/``B``, unfrozen blocks, head) still get
            copies of their own, which :func:`ema_update` averages. The trainer relies on
            frozen weights never being modified in place.
    """
    # deepcopy returns what the memo maps an object's id to: the shared tensors themselves.
    memo = {id(p): p for p in student.parameters() if not p.requires_grad} if share_frozen else {}
    teacher = copy.deepcopy(student, memo)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, per parameter matched by name.

    Only the student's trainable parameters are averaged: a frozen student weight equals the
    teacher's copy already, so averaging it would cost time and change nothing.
    """
    teacher_params = dict(teacher.named_parameters())
    pairs = [(teacher_params[n], p) for n, p in student.named_parameters() if p.requires_grad]
    if not pairs:
        return
    t_params, s_params = zip(*pairs)
    torch._foreach_lerp_(list(t_params), [p.detach() for p in s_params], 1.0 - momentum)


def teacher_momentum(step: int, total_steps: int, base: float) -> float:
    """Cosine schedule of the EMA momentum from ``base`` at step 0 to 1 on the last step."""
    return cosine_schedule(step, total_steps, base=base, final=1.0)
