"""Run (or resume) one training: check the config and the run folder, build, loop.

:func:`dino_mx.train.train` calls :func:`run` with the periodic evaluation of
:mod:`dino_mx.eval` (the engine does not import eval: evaluation sits above training).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import DictConfig

from dino_mx.config import Precision
from dino_mx.engine.build import LoopConfig, build_parts
from dino_mx.engine.resume import check_start
from dino_mx.engine.trainer import PeriodicEval, Trainer
from dino_mx.engine.validate import validate_config

log = logging.getLogger(__name__)

PRECISIONS = tuple(str(p) for p in Precision)


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
    # A refused start (checkpoints, changed config) writes nothing: checked before anything is.
    if check_start(cfg, run_dir) is None and cfg.trainer.resume:
        log.warning("trainer.resume=true but %s has no checkpoint: starting", run_dir)
    set_seed(cfg.trainer.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg, run_dir)
    evaluate = evaluation(cfg) if evaluation is not None else None
    return build_trainer(cfg, run_dir, accelerator, evaluate).fit()
