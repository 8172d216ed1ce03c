"""The EMA teacher of DINO: a copy of the student updated as m * teacher + (1 - m) * student."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


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
    # Sharded (FSDP) networks: each process averages its own shards, which line up because
    # the teacher is sharded exactly as the student; no communication.
    teacher_local = [_local(p) for p in t_params]
    torch._foreach_lerp_(teacher_local, [_local(p).detach() for p in s_params], 1.0 - momentum)


def _local(tensor: Tensor) -> Tensor:
    """This process's shard of a DTensor; a plain tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor
