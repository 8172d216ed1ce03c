"""Builders: the run sized from its data (and, with ``trainer.budget_min``, from this machine)
before anything is built. The arithmetic is :mod:`dino_mx.engine.budget`; this module reads the
config, counts the training images and writes the results back into a copy of the config, so the
run's ``config.yaml`` records the batch, learning rate, length and evaluation interval it used.

Order (``engine.run.run``): :func:`size_from_data` (deterministic: a resumed run derives the same
numbers, so :func:`~dino_mx.engine.resume.check_start` compares like with like), then
:func:`cap_by_minutes` (after the Accelerator exists: it times a few updates), then
:func:`spread_evaluations` over the final length.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dino_mx.checkpoint.format import CONFIG_FILE
from dino_mx.data import build_dataset
from dino_mx.engine.budget import Budget, fit_batch, minutes_cap, plan_steps

log = logging.getLogger(__name__)


def size_from_data(cfg: DictConfig, processes: int, is_main: bool = True) -> DictConfig:
    """A copy of ``cfg`` with the batch fitted to the data (``trainer.min_updates_per_epoch``,
    lr scaled with it) and ``trainer.max_steps`` from ``trainer.epochs``; each change logged."""
    t = cfg.trainer
    if t.min_updates_per_epoch <= 0 and t.epochs is None:
        return cfg
    sized = copy.deepcopy(cfg)
    t, o = sized.trainer, sized.optim
    n_images = len(build_dataset(cfg.data, "train"))  # type: ignore[arg-type]
    replicas = processes * t.grad_accum
    if t.min_updates_per_epoch > 0:
        batch = fit_batch(t.batch_size, n_images, replicas, t.min_updates_per_epoch)
        if batch != t.batch_size:
            scale = batch / t.batch_size
            _say(
                is_main,
                f"trainer.batch_size = {batch} (was {t.batch_size}): {n_images} images give >= "
                f"{t.min_updates_per_epoch} updates per epoch; optim.lr = {o.lr * scale:.3g}, "
                f"optim.min_lr = {o.min_lr * scale:.3g} (scaled with the batch)",
            )
            t.batch_size, o.lr, o.min_lr = batch, o.lr * scale, o.min_lr * scale
    budget = plan_steps(t.max_steps, t.epochs, n_images, t.batch_size * replicas)
    if t.epochs is not None and budget is not None:
        _say(is_main, f"trainer.max_steps = {budget.steps}: {budget.reason}")
        t.max_steps = budget.steps
    return sized


def cap_by_minutes(
    cfg: DictConfig,
    seconds_per_update: Callable[[], float],
    resume_from: Path | None,
    is_main: bool = True,
) -> DictConfig:
    """A copy of ``cfg`` whose ``trainer.max_steps`` fits in ``trainer.budget_min`` at the
    measured ``seconds_per_update()``. A resumed run keeps the length its checkpoint was
    trained for: measuring again would change the schedules mid-run."""
    t = cfg.trainer
    if t.budget_min is None:
        return cfg
    if resume_from is not None:
        steps = int(OmegaConf.load(resume_from / CONFIG_FILE).trainer.max_steps)
        budget = Budget(steps, f"the length {resume_from.name} was trained for")
    else:
        start = None if t.max_steps is None else Budget(t.max_steps, f"{t.max_steps} updates")
        budget = minutes_cap(start, t.budget_min, seconds_per_update())
    _say(is_main, f"trainer.max_steps = {budget.steps}: {budget.reason}")
    capped = copy.deepcopy(cfg)
    capped.trainer.max_steps = budget.steps
    return capped


def spread_evaluations(cfg: DictConfig) -> DictConfig:
    """``trainer.eval_count`` > 0: a copy with ``eval_every = ceil(max_steps / eval_count)``."""
    t = cfg.trainer
    if t.eval_count <= 0:
        return cfg
    spread = copy.deepcopy(cfg)
    spread.trainer.eval_every = max(1, math.ceil(t.max_steps / t.eval_count))
    return spread


def _say(is_main: bool, message: str) -> None:
    if is_main:
        log.info(message)
