"""How long a run trains: ``trainer.max_steps``, ``trainer.epochs`` and ``trainer.budget_min``
turned into one number of optimiser updates before anything is built.

A fixed number of steps means a different thing on every dataset: 800 steps at batch 128 are 22
epochs of PneumoniaMNIST's 4,708 images but 188 of a 546-image set, where DINO has long since
stopped learning (docs/transfer.md). A budget in epochs follows the data; ``max_steps`` then caps
it (a large dataset is not trained for hours by default), and a budget in minutes caps it again on
the machine at hand. The schedules (warm-up, cosine lr, teacher momentum and temperature) are
fractions of the result, so they follow it too. The result is written into the run's
``config.yaml`` as ``trainer.max_steps``: a resumed run, or a rerun with that value, trains the
same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """The number of updates a run takes and the sentence that says why."""

    steps: int
    reason: str


def steps_per_epoch(n_images: int, global_batch: int) -> int:
    """Updates per pass over ``n_images``; the loader drops a last partial batch, so
    ``n_images // global_batch``, and at least 1 (a set smaller than one batch is drawn with
    the sampler's repeats)."""
    return max(1, n_images // global_batch)


def fit_batch(batch_size: int, n_images: int, replicas: int, min_updates: int) -> int:
    """The batch per process that gives at least ``min_updates`` updates per epoch: ``batch_size``,
    or for a small dataset ``batch_size`` halved until it does (at least 1).

    Args:
        replicas: Batches per update: processes x gradient-accumulation steps.

    Why: DINO's momenta (the EMA teacher, the centre) and its schedules count updates, not
    images. At batch 128 a 546-image set is 4 updates per pass, and a teacher with a ~100-update
    memory averages over 25 epochs; at 32 a pass is 17 updates, as on a large set.
    """
    batch = batch_size
    while batch > 1 and n_images // (batch * replicas) < min_updates:
        batch //= 2
    return batch


def plan_steps(
    max_steps: int | None,
    epochs: float | None,
    n_images: int,
    global_batch: int,
) -> Budget | None:
    """The run's length in updates: ``epochs`` over the data, capped by ``max_steps``.

    Args:
        max_steps: Updates, or their upper bound when ``epochs`` is set; None: no cap.
        epochs: Passes over the training set, or None to train ``max_steps``.
        n_images: Training images.
        global_batch: Images per update: batch per process x processes x accumulation.

    Returns:
        None when neither is set (a budget in minutes alone).
    """
    if epochs is None:
        return None if max_steps is None else Budget(max_steps, f"trainer.max_steps={max_steps}")
    per_epoch = steps_per_epoch(n_images, global_batch)
    by_epochs = max(1, math.ceil(epochs * per_epoch))
    reason = (
        f"trainer.epochs={epochs:g} x {per_epoch} updates per epoch ({n_images} images, "
        f"{global_batch} per update) = {by_epochs}"
    )
    if max_steps is not None and max_steps < by_epochs:
        return Budget(max_steps, f"{reason}, capped by trainer.max_steps={max_steps}")
    return Budget(by_epochs, reason)


def minutes_cap(budget: Budget | None, minutes: float, seconds_per_step: float) -> Budget:
    """``budget`` (None: unbounded) capped to what fits in ``minutes`` at ``seconds_per_step``.

    Only the updates are timed: periodic evaluation and saves come on top.
    """
    fits = max(1, int(minutes * 60 / seconds_per_step))
    if budget is not None and fits >= budget.steps:
        return budget
    timing = f"trainer.budget_min={minutes:g} at {seconds_per_step:.3f} s per update (measured)"
    if budget is None:
        return Budget(fits, f"{timing} = {fits}")
    return Budget(fits, f"{budget.reason}, capped by {timing} to {fits}")
