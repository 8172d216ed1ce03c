"""Collapse guard: notice when the DINO teacher stops carrying information, and say what to change.

DINO's two known collapses (Caron et al., ICCV 2021, Sec. 5.3) show in the monitors each method
logs at every ``trainer.log_every`` step (:func:`dino_mx.engine.methods.teacher_entropies`), with K
the number of prototypes (``method.head.out_dim``):

- **uniform**: every sample's target is nearly flat, the mean per-sample entropy
  ``teacher_entropy`` sits at log K (too little sharpening);
- **one prototype**: every sample picks the same prototype, the entropy of the batch-mean
  target ``teacher_batch_entropy`` sits at 0 (too little centring).

The two cannot hold at once: the batch-mean entropy is at least the mean per-sample entropy.
A condition counts only when it holds at every one of ``window`` consecutive logged steps, so
the first noisy steps of a run do not trip it. ``trainer.on_collapse`` decides what happens:
``warn`` logs one line per kind per run, ``stop`` logs it and ends the run before the collapsed
step is saved (the last checkpoint stays ``latest``), ``off`` does nothing.

Under ``sinkhorn_knopp`` centring the batch entropy is held near log K by construction, so only
the uniform check can fire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig

from dino_mx.checkpoint import latest_checkpoint
from dino_mx.config import MethodConfig, OptimConfig, TrainerConfig

log = logging.getLogger(__name__)

ON_COLLAPSE = ("warn", "stop", "off")
MONITORS = ("teacher_entropy", "teacher_batch_entropy")
KNOBS = (
    *("method.teacher_temp", "method.momentum_teacher", "optim.lr", "method.head.out_dim"),
    "method.koleo_weight",
)
# Per kind: what the report says, and which way to turn each of KNOBS. A sharper teacher (lower
# temperature) fights uniform output and a softer one a single prototype (DINO, Sec. 5.3); a
# slower teacher and a lower lr steady both; the head size has no known right direction; KoLeo
# pushes the images' features apart, the one thing that held small sets (docs/transfer.md).
KINDS = {
    "uniform": (
        "teacher output near uniform: per-sample entropy",
        ">=",
        ("lower", "raise", "lower", "resize", "raise"),
    ),
    "onehot": (
        "teacher collapsed onto one prototype: batch entropy",
        "<=",
        ("raise", "raise", "lower", "resize", "raise"),
    ),
}


class CollapseGuard:
    """Watches the teacher entropies over a window of logged steps.

    Args:
        mode: ``warn``, ``stop`` or ``off`` (``trainer.on_collapse``).
        log_k: log K, the entropy of a uniform target over the K prototypes.
        window: Consecutive logged steps a condition must hold (>= 1).
        uniform_ratio: Near uniform when ``teacher_entropy >= uniform_ratio * log K``.
        onehot_ratio: Near one prototype when ``teacher_batch_entropy <= onehot_ratio * log K``.
        knobs: The settings worth changing, ``{key: current value}``, named in the message.
    """

    def __init__(
        self,
        mode: str,
        log_k: float,
        window: int = 10,
        uniform_ratio: float = 0.98,
        onehot_ratio: float = 0.1,
        knobs: Mapping[str, float] | None = None,
    ):
        if mode not in ON_COLLAPSE:
            raise ValueError(
                f"trainer.on_collapse '{mode}'; valid choices: {', '.join(ON_COLLAPSE)}"
            )
        if window < 1:
            raise ValueError(f"trainer.collapse_window must be >= 1, got {window}")
        for key, ratio in (("uniform", uniform_ratio), ("onehot", onehot_ratio)):
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"trainer.collapse_{key}_ratio must be in (0, 1], got {ratio}")
        if mode != "off" and not log_k > 0:
            raise ValueError(
                f"the collapse guard needs method.head.out_dim >= 2 (log K = {log_k}); "
                "or set trainer.on_collapse=off"
            )
        self.mode, self.log_k, self.window = mode, log_k, window
        self.uniform_ratio, self.onehot_ratio = uniform_ratio, onehot_ratio
        self.knobs = dict(knobs or {})
        self.streaks = {"uniform": 0, "onehot": 0}  # consecutive logged steps each held
        self.reported: set[str] = set()

    def update(self, monitors: Mapping[str, float]) -> str | None:
        """Count one logged step; the one-line report when a collapse has just held for the
        whole window (once per kind), else ``None``. Steps without the monitors are skipped.

        Args:
            monitors: This step's scalars: ``teacher_entropy``, ``teacher_batch_entropy`` and,
                optionally, ``step`` (named in the report).
        """
        if self.mode == "off" or not all(k in monitors for k in MONITORS):
            return None
        per_sample, batch = monitors["teacher_entropy"], monitors["teacher_batch_entropy"]
        held = {
            "uniform": per_sample >= self.uniform_ratio * self.log_k,
            "onehot": batch <= self.onehot_ratio * self.log_k,
        }  # NaN holds neither: divergence is the finiteness check's business
        for kind, now in held.items():
            self.streaks[kind] = self.streaks[kind] + 1 if now else 0
            if self.streaks[kind] >= self.window and kind not in self.reported:
                self.reported.add(kind)
                value = per_sample if kind == "uniform" else batch
                return self._message(kind, max(0.0, value), monitors)  # no "-0.000"
        return None

    def _message(self, kind: str, value: float, monitors: Mapping[str, float]) -> str:
        k = round(math.exp(self.log_k))
        ratio = self.uniform_ratio if kind == "uniform" else self.onehot_ratio
        steps = f"the last {self.window} logged steps"
        if "step" in monitors:
            steps += f" (to step {int(monitors['step'])})"
        what, sign, verbs = KINDS[kind]
        hints = ", ".join(
            f"{verb} {key}" + (f" (now {self.knobs[key]:g})" if key in self.knobs else "")
            for verb, key in zip(verbs, KNOBS)
        )
        return (
            f"{what} {value:.3f} {sign} {ratio:g} log K ({ratio * self.log_k:.3f}; "
            f"log K = {self.log_k:.3f}, K = {k}) over {steps}; try: {hints}"
        )

    def watch(
        self, monitors: Mapping[str, float], device: torch.device, is_main: bool, run_dir: Path
    ) -> bool:
        """The trainer's hook at each logged step: update, log the report, say whether to stop.

        The monitors are averaged over the processes first (each process sees its own batch),
        so every process takes the same decision and ``stop`` ends them together. The report is
        logged by the main process only.

        Returns:
            True when ``mode`` is ``stop`` and a collapse has just been reported.
        """
        if self.mode == "off":
            return False
        message = self.update(mean_over_processes(monitors, device))
        if message is None:
            return False
        stop = self.mode == "stop"
        if stop:
            ckpt = latest_checkpoint(run_dir)
            kept = (
                f"the last checkpoint is {ckpt.name}" if ckpt else "no checkpoint was saved before"
            )
            message += f"; trainer.on_collapse=stop: stopped without saving this step, {kept}"
        else:
            message += " (trainer.on_collapse=stop ends the run, off silences this)"
        if is_main:
            log.warning(message)
        return stop


def mean_over_processes(monitors: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """``monitors`` with the collapse monitors averaged over every process (as they are in one).

    With equal per-process batches the mean per-sample entropy is exact; the batch entropy
    becomes the mean of the per-process batch entropies, which is 0 when each process's batch
    sits on one prototype.
    """
    out = dict(monitors)
    if not (dist.is_available() and dist.is_initialized()) or not all(k in out for k in MONITORS):
        return out
    values = torch.tensor([out[k] for k in MONITORS], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    values /= dist.get_world_size()
    out.update(zip(MONITORS, values.tolist()))
    return out


def build_collapse_guard(
    trainer: TrainerConfig | DictConfig,
    method: MethodConfig | DictConfig,
    optim: OptimConfig | DictConfig,
) -> CollapseGuard:
    """Builder: ``trainer.on_collapse`` and ``trainer.collapse_*`` to a :class:`CollapseGuard`
    for the DINO head's K = ``method.head.out_dim`` prototypes."""
    knobs = {
        "method.teacher_temp": method.teacher_temp,
        "method.momentum_teacher": method.momentum_teacher,
        "optim.lr": optim.lr,
        "method.head.out_dim": method.head.out_dim,
        "method.koleo_weight": method.koleo_weight,
    }
    return CollapseGuard(
        trainer.on_collapse,
        math.log(max(method.head.out_dim, 1)),
        trainer.collapse_window,
        trainer.collapse_uniform_ratio,
        trainer.collapse_onehot_ratio,
        knobs,
    )
