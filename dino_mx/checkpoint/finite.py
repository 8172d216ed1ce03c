"""Finiteness guards: weights that are not finite on any process stop every process together.

A diverged step must never become a checkpoint, so :func:`check_finite` runs before anything of
a save is written. Under DDP one process that stops alone leaves the others waiting in an
all-reduce until the timeout, so each guard turns its local verdict into a flag reduced over
the processes (max: one bad process is enough), and every process raises the same
:class:`DivergedError`, whose one-line message names the last good checkpoint and the knobs to
turn. The training loop's loss guard (:mod:`dino_mx.engine.divergence`) is built on the same
pieces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from dino_mx.errors import UserError

ADVICE = "lower optim.lr or raise optim.warmup_ratio"


class DivergedError(UserError, FloatingPointError):
    """Training diverged (non-finite loss or weights); nothing of the bad step was saved.

    A :class:`~dino_mx.errors.UserError`: ``dino-mx train`` prints the one-line message.
    """


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def any_process(flags: Tensor) -> Tensor:
    """Element-wise max of ``flags`` over all processes (``flags`` itself in one process).

    Pass a tensor on the process's device (a CUDA one under NCCL).
    """
    if _distributed():
        flags = flags.clone()
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags


def count_nonfinite(tensors: Iterable[Tensor]) -> tuple[int, int]:
    """(tensors holding a NaN or inf, floating-point tensors) among ``tensors``."""
    floats = [t.detach() for t in tensors if t.is_floating_point()]
    if not floats:
        return 0, 0
    bad = torch.stack([~torch.isfinite(t).all() for t in floats])
    return int(bad.sum()), len(floats)


def last_good(checkpoint: Path | None) -> str:
    """The message part naming the newest checkpoint that passed the guards."""
    if checkpoint is None:
        return "no checkpoint was saved before it"
    return f"the last good checkpoint is {checkpoint}"


def check_finite(
    parts: Mapping[str, Iterable[Tensor]], step: int, checkpoint: Path | None, device: torch.device
) -> None:
    """Raise :class:`DivergedError` on every process if a tensor of ``parts`` is not finite on
    any process. ``parts`` maps a name (``student``) to its tensors.
    """
    names = list(parts)
    counts = [count_nonfinite(parts[name]) for name in names]
    bad = any_process(torch.tensor([c[0] for c in counts], dtype=torch.float32, device=device))
    if bad.any():
        where = ", ".join(
            f"{int(b)} of {c[1]} {name} tensors" for name, b, c in zip(names, bad, counts) if b
        )
        raise DivergedError(
            f"the weights diverged at step {step} ({where} not finite) and were not saved; "
            f"{last_good(checkpoint)}; {ADVICE}"
        )
