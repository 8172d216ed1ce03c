"""Per-step schedules of DINO training, in closed form: every one of them is in this module.

Step ``s`` counts optimiser updates from 0 to ``total_steps - 1``; every schedule reaches its
final value exactly on the last step, so the end points are testable and resuming at any step
gives the same value as an uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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


def teacher_momentum(step: int, total_steps: int, base: float) -> float:
    """Cosine schedule of the EMA momentum from ``base`` at step 0 to 1 on the last step."""
    return cosine_schedule(step, total_steps, base=base, final=1.0)


@dataclass(frozen=True)
class StepHParams:
    """The hyper-parameters of one optimiser step (logged under these names)."""

    lr: float  # the peak-relative learning rate; each parameter group scales it (lr_scale)
    wd: float  # weight decay of the groups that have it
    momentum: float  # EMA momentum of the teacher
    teacher_temp: float  # the teacher's softmax temperature


@dataclass(frozen=True)
class Schedules:
    """Every per-step hyper-parameter of one run of ``total_steps`` optimiser steps.

    lr: linear warm-up over ``warmup_steps`` to ``lr``, then cosine to ``min_lr`` (DINO).
    wd: cosine from ``weight_decay`` to ``weight_decay_end`` (DINO raises it over training).
    momentum: cosine from ``momentum_teacher`` to 1 (the teacher freezes as training ends).
    teacher_temp: linear from ``warmup_teacher_temp`` to ``teacher_temp`` over
    ``warmup_teacher_temp_steps`` (a softer teacher early on avoids an early collapse).
    """

    total_steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    weight_decay_end: float
    momentum_teacher: float
    teacher_temp: float
    warmup_teacher_temp: float
    warmup_teacher_temp_steps: int

    def at(self, step: int) -> StepHParams:
        total = self.total_steps
        return StepHParams(
            lr=cosine_schedule(step, total, self.lr, self.min_lr, warmup_steps=self.warmup_steps),
            wd=cosine_schedule(step, total, self.weight_decay, self.weight_decay_end),
            momentum=teacher_momentum(step, total, self.momentum_teacher),
            teacher_temp=linear_warmup(
                step, self.warmup_teacher_temp_steps, self.warmup_teacher_temp, self.teacher_temp
            ),
        )
