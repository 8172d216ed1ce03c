"""The loss guard: a non-finite loss on any process stops every process together.

Checked after each step's forward pass, before the optimiser can spread the NaN into the weights;
the weights themselves are checked before every save (:func:`dino_mx.checkpoint.check_finite`).
Both raise the same :class:`~dino_mx.checkpoint.DivergedError` on every process, naming the last
good checkpoint and the knobs to turn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dino_mx.checkpoint.finite import ADVICE, DivergedError, any_process, last_good


def check_loss(loss: Tensor, step: int, checkpoint: Callable[[], Path | None]) -> None:
    """Raise :class:`DivergedError` on every process if ``loss`` is not finite on any.

    ``checkpoint`` returns the newest good checkpoint (asked only when the loss is bad).
    """
    bad = any_process((~torch.isfinite(loss.detach())).float().reshape(1))
    if bad.item():
        raise DivergedError(
            f"the loss is not finite at step {step} (on at least one process); "
            f"{last_good(checkpoint())}; {ADVICE}"
        )
