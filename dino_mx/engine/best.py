"""``trainer.best_metric``: the loop's side of the best checkpoint (:mod:`dino_mx.checkpoint.best`).

After each periodic evaluation the main process, which alone holds the evaluation's scalars,
decides whether they beat the best so far, and every process learns the decision (saving a
checkpoint is collective). A new best is saved at that step, also between ``save_every`` steps;
``best.json`` is pointed at it once the save is complete, and rotation spares it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from dino_mx.checkpoint import BestTracker

log = logging.getLogger(__name__)


class BestSelector:
    """Picks the run's best checkpoint from the periodic evaluation's scalars.

    Args:
        run_dir: The run directory (``best.json`` in its ``checkpoints/``).
        metric: The scalar to maximise (``trainer.best_metric``).
        accelerator: Every process makes one; only the main process reads and writes the pointer.
    """

    def __init__(self, run_dir: Path, metric: str, accelerator: Accelerator):
        self.run_dir, self.acc = run_dir, accelerator
        self.tracker = BestTracker(run_dir, metric) if accelerator.is_main_process else None

    def is_new_best(self, scalars: Mapping[str, float]) -> bool:
        """Every process: whether the main process's ``scalars`` beat the best so far.

        Raises:
            ValueError: On every process: the scalars lack ``trainer.best_metric`` (at the first
                evaluation); the message lists the keys they have.
        """
        decision: list[bool | str] = [False]
        if self.tracker is not None:
            try:
                decision[0] = self.tracker.improves(scalars)
            except ValueError as error:  # sent along: a process left waiting would hang
                decision[0] = str(error)
        if self.acc.num_processes > 1:
            broadcast_object_list(decision, from_process=0)
        if isinstance(decision[0], str):
            raise ValueError(decision[0])
        return decision[0]

    def keep(self) -> tuple[Path, ...]:
        """The folders a save's rotation spares: the best checkpoint (main process, who rotates)."""
        best = self.tracker.best if self.tracker is not None else None
        return (best.folder(self.run_dir),) if best is not None else ()

    def record(self, ckpt_dir: Path, step: int, scalars: Mapping[str, float]) -> None:
        """Point ``best.json`` at ``ckpt_dir``, saved at ``step``, and log it (main process).
        Call it once the save is complete: the pointer only ever names a whole checkpoint."""
        if self.tracker is None:
            return
        previous = self.tracker.record(ckpt_dir, step, scalars)
        was = (
            f"was {previous.value:.3f} at step {previous.step}"
            if previous
            else "the first evaluation"
        )
        value = self.tracker.value(scalars)
        log.info("step %d: new best %s = %.3f (%s)", step, self.tracker.metric, value, was)
