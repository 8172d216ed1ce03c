"""Per-step schedules of DINO training, in closed form.

Step ``s`` counts optimiser updates from 0 to ``total_steps - 1``; every schedule reaches its
final value exactly on the last step, so the end points are testable and resuming at any step
gives the same value as an uninterrupted run.
"""

from __future__ import annotations

import math


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear ramp from ``start`` (step 0) to ``end`` (step ``warmup_steps``), then ``end``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps


def cosine_schedule(
    step: int,
    total_steps: int,
    base: float,
    final: float,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> float:
    """Linear warm-up to ``base``, then half-cosine decay from ``base`` to ``final``.

    Args:
        step: Current optimiser step in ``[0, total_steps)``; later steps return ``final``.
        total_steps: Length of the run in optimiser steps.
        base: Value at the end of warm-up (the peak learning rate, for instance).
        final: Value on the last step, ``total_steps - 1``.
        warmup_steps: Steps of linear warm-up from ``warmup_start`` to ``base``.
        warmup_start: Value at step 0 when ``warmup_steps > 0``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be below total_steps ({total_steps})")
    if step < warmup_steps:
        return linear_warmup(step, warmup_steps, warmup_start, base)
    decay_steps = total_steps - 1 - warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - warmup_steps) / decay_steps)
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * progress))
