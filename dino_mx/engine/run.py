"""Run (or resume) one training: check the config and the run folder, build, loop.

:func:`dino_mx.train.train` calls :func:`run` with the periodic evaluation of
:mod:`dino_mx.eval` (the engine does not import eval: evaluation sits above training).
"""

from __future__ import annotations

import copy
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, set_seed
from omegaconf import DictConfig

from dino_mx.config import Precision
from dino_mx.engine.build import LoopConfig, build_parts
from dino_mx.engine.resume import check_start
from dino_mx.engine.sizing import cap_by_minutes, size_from_data, spread_evaluations
from dino_mx.engine.trainer import PeriodicEval, Trainer, batches_of
from dino_mx.engine.validate import validate_config

log = logging.getLogger(__name__)

PRECISIONS = tuple(str(p) for p in Precision)
PROBE_STEPS = 6  # timed updates of trainer.budget_min's probe; the first (warm-up) is not counted


def resolve_precision(precision: str) -> str:
    """``trainer.precision`` to Accelerate's ``mixed_precision``: auto = bf16 on a GPU that has
    it, else fp32 (bf16 autocast on a CPU without bf16 units is ~15x slower)."""
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision '{precision}'; valid choices: {sorted(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "no" if precision == "fp32" else precision


def make_accelerator(cfg: DictConfig, run_dir: Path) -> Accelerator:
    """Accelerator with this run's precision, accumulation and TensorBoard folder."""
    acc = Accelerator(
        # Without cpu=True, Accelerate ignores torchrun's WORLD_SIZE on a machine without CUDA.
        cpu=not torch.cuda.is_available(),
        mixed_precision=resolve_precision(cfg.trainer.precision),
        gradient_accumulation_steps=cfg.trainer.grad_accum,
        log_with="tensorboard",
        project_dir=str(run_dir),
    )
    acc.init_trackers("tb")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise
    return acc


def build_trainer(
    cfg: DictConfig, run_dir: Path, accelerator: Accelerator, evaluate: PeriodicEval | None = None
) -> Trainer:
    """The loop over the parts ``cfg`` describes, on ``accelerator``, resuming from the
    checkpoint :func:`~dino_mx.engine.resume.check_start` picks (``trainer.resume``)."""
    parts = build_parts(cfg, run_dir, accelerator)
    loop = LoopConfig.from_config(cfg)
    return Trainer(parts, loop, accelerator, run_dir, evaluate, check_start(cfg, run_dir))


def seconds_per_update(
    cfg: DictConfig, accelerator: Accelerator, steps: int = PROBE_STEPS
) -> float:
    """The median wall time of one update of the run ``cfg`` describes, on this machine.

    A throw-away copy of the run is built in a temporary folder and takes ``steps`` updates
    (the first, which warms up the loader and the kernels, is not counted); then it is freed, so
    the real run starts from the same seed as if nothing had been measured. Every process
    measures, the main process's figure is used by all.
    """
    probe = copy.deepcopy(cfg)
    probe.trainer.max_steps, probe.trainer.eval_every, probe.trainer.eval_count = 10 * steps, 0, 0
    with tempfile.TemporaryDirectory(prefix="dino_mx_probe_") as folder:
        trainer = build_trainer(probe, Path(folder), accelerator)
        trainer.learner.train()
        batches = batches_of(trainer.loader())
        times = []
        for step in range(steps):
            start = time.perf_counter()
            trainer.step(batches, trainer.parts.schedules.at(step), monitor=False)
            times.append(time.perf_counter() - start)
        del trainer, batches
        accelerator.free_memory()
    holder = [statistics.median(times[1:])]
    if accelerator.num_processes > 1:
        broadcast_object_list(holder, from_process=0)
    return float(holder[0])


def run(
    cfg: DictConfig,
    run_dir: Path,
    evaluation: Callable[[DictConfig], PeriodicEval | None] | None = None,
) -> dict[str, float]:
    """Run (or resume) the training ``cfg`` describes in ``run_dir``; the last logged scalars.

    Args:
        evaluation: Builds the periodic evaluation from the config (``trainer.eval_every``).
    """
    validate_config(cfg)  # values, ranges, keys added with +: before anything is built
    state = PartialState(cpu=not torch.cuda.is_available())
    cfg = size_from_data(cfg, state.num_processes, state.is_main_process)
    # A refused start (checkpoints, changed config) writes nothing: checked before anything is.
    resume_from = check_start(cfg, run_dir)
    if resume_from is None and cfg.trainer.resume:
        log.warning("trainer.resume=true but %s has no checkpoint: starting", run_dir)
    set_seed(cfg.trainer.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg, run_dir)
    measure = partial(seconds_per_update, cfg, accelerator)
    cfg = cap_by_minutes(cfg, measure, resume_from, accelerator.is_main_process)
    set_seed(cfg.trainer.seed)  # as if nothing had been measured
    cfg = spread_evaluations(cfg)
    evaluate = evaluation(cfg) if evaluation is not None else None
    return build_trainer(cfg, run_dir, accelerator, evaluate).fit()
