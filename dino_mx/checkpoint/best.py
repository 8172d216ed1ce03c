"""The best checkpoint of a run: the one whose periodic evaluation scored highest.

With ``trainer.eval_every`` > 0 the trainer evaluates the teacher every so many steps (a k-NN on
val). When the ``trainer.best_metric`` scalar beats every earlier evaluation, the checkpoint of
that step is saved and ``RUN/checkpoints/best.json`` points at it::

    {"checkpoint": "step_0000300", "step": 300, "metric": "knn/val_accuracy_k20", "value": 0.83}

The pointer is replaced atomically once the checkpoint is complete, so it only ever names a
whole checkpoint; rotation spares that folder (``save_checkpoint(..., keep=...)``). ``dino-mx
eval`` and ``dino-mx export`` read a run directory's best checkpoint before its latest
(:func:`~.listing.choose_checkpoint`); resuming always continues from the latest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from dino_mx.checkpoint.format import BEST, CHECKPOINTS
from dino_mx.checkpoint.io import read_json, write_text_atomic


@dataclass(frozen=True)
class BestRecord:
    """What ``best.json`` holds: the folder name under ``RUN/checkpoints``, the step it was
    saved at, and the periodic-evaluation scalar that made it the best."""

    checkpoint: str
    step: int
    metric: str
    value: float

    def describe(self) -> str:
        """``knn/val_accuracy_k20 0.830 at step 300``, for messages."""
        return f"{self.metric} {self.value:.3f} at step {self.step}"

    def folder(self, run_dir: str | Path) -> Path:
        """The checkpoint folder this record names in ``run_dir`` (it may be gone)."""
        return Path(run_dir) / CHECKPOINTS / self.checkpoint


def read_best(run_dir: str | Path) -> BestRecord | None:
    """The record ``best.json`` holds, else None (no pointer: no periodic evaluation ran).

    Raises:
        ValueError: The file is not a pointer this module wrote.
    """
    pointer = Path(run_dir) / CHECKPOINTS / BEST
    if not pointer.is_file():
        return None
    try:
        data = read_json(pointer)
        return BestRecord(
            str(data["checkpoint"]), int(data["step"]), str(data["metric"]), float(data["value"])
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{pointer} is not a best-checkpoint pointer ({error!r}): delete it to use the "
            "latest checkpoint"
        ) from None


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder ``best.json`` names, else None (no pointer, or its folder is gone)."""
    record = read_best(run_dir)
    if record is None or not record.folder(run_dir).is_dir():
        return None
    return record.folder(run_dir)


def write_best(run_dir: str | Path, record: BestRecord) -> None:
    """Point ``best.json`` at ``record`` atomically (after its checkpoint is complete)."""
    text = json.dumps(asdict(record), indent=1) + "\n"
    write_text_atomic(Path(run_dir) / CHECKPOINTS / BEST, text)


class BestTracker:
    """Whether a periodic evaluation beats the run's best, and recording a new best.

    The main process keeps one. It starts from ``best.json``, so a resumed run keeps comparing
    against the best of the steps before the interruption. A pointer to another metric (the
    setting changed on resume) or to a folder that is gone is not compared against: the first
    evaluation then sets the best.

    Args:
        run_dir: The run directory.
        metric: The key of the periodic evaluation's scalars to maximise
            (``trainer.best_metric``).
    """

    def __init__(self, run_dir: str | Path, metric: str):
        self.run_dir, self.metric = Path(run_dir), metric
        record = read_best(run_dir)
        usable = record is not None and record.metric == metric and record.folder(run_dir).is_dir()
        self.best = record if usable else None

    def value(self, scalars: Mapping[str, float]) -> float:
        """The metric among ``scalars``.

        Raises:
            ValueError: The evaluation returned no such scalar; the message lists those it did.
        """
        if self.metric not in scalars:
            available = ", ".join(sorted(scalars)) or "none"
            raise ValueError(
                f"trainer.best_metric={self.metric} is not a scalar of the periodic evaluation; "
                f"it returned: {available}"
            )
        return float(scalars[self.metric])

    def improves(self, scalars: Mapping[str, float]) -> bool:
        """Whether ``scalars`` beat the best so far (always, for the first evaluation).

        Strictly greater: a tie keeps the earlier checkpoint. A tie is no evidence for the
        longer-trained network, and the failures picking a checkpoint guards against — the
        teacher drifting to uniform, the network memorising the training set — come late in a
        run. An undefined value (NaN: an AUC on one class) never improves.

        Raises:
            ValueError: ``scalars`` lack the metric.
        """
        value = self.value(scalars)
        if math.isnan(value):
            return False
        return self.best is None or value > self.best.value

    def record(self, ckpt_dir: Path, step: int, scalars: Mapping[str, float]) -> BestRecord | None:
        """Make ``ckpt_dir``, saved at ``step`` with these ``scalars``, the best and write the
        pointer; call it once the checkpoint is complete. Returns the previous best."""
        previous = self.best
        self.best = BestRecord(ckpt_dir.name, step, self.metric, self.value(scalars))
        write_best(self.run_dir, self.best)
        return previous
