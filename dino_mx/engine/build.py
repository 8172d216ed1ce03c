"""Builders: the training config to the parts the loop runs. The only place the loop's config
is read; the loop (:mod:`dino_mx.engine.trainer`) takes the parts and a :class:`LoopConfig`.

Order matters and is kept fixed, because every random draw of a seeded run (the backbone's
init, LoRA's, the heads') comes from the global RNG in this order: data, backbone, mask token,
frozen base, adapter, distillation teacher (in a forked RNG), heads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from dino_mx.checkpoint import CheckpointParts, FrozenBase, TrainState
from dino_mx.data import MaskedCrops, build_augment, build_batch_augment, build_dataset
from dino_mx.data.views import N_GLOBAL
from dino_mx.engine.collapse import CollapseGuard, build_collapse_guard
from dino_mx.engine.distill import build_distill_term
from dino_mx.engine.ema import build_teacher
from dino_mx.engine.fsdp import (
    FullOptimizerState,
    FullState,
    GatheredTeacher,
    shard,
    use_fsdp,
)
from dino_mx.engine.learner import Learner
from dino_mx.engine.methods import MethodParts, get_method, prepare_mask_token
from dino_mx.engine.optim import param_groups
from dino_mx.engine.schedules import Schedules
from dino_mx.models import build_backbone
from dino_mx.models.adapters import build_adapter
from dino_mx.models.param_report import log_parameters

log = logging.getLogger(__name__)

TRAINING_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoopConfig:
    """What the loop needs of ``trainer``, ``optim`` and ``data``: numbers, no config."""

    max_steps: int
    batch_size: int  # per process
    grad_accum: int
    seed: int
    num_workers: int
    log_every: int
    save_every: int
    keep_last: int
    eval_every: int
    best_metric: str  # the periodic evaluation's scalar that picks the best checkpoint
    progress: bool
    clip_grad: float  # 0 disables
    freeze_last_layer_steps: int  # the heads' last layers get no update before this step

    @classmethod
    def from_config(cls, cfg: DictConfig) -> LoopConfig:
        t, o = cfg.trainer, cfg.optim
        return cls(
            max_steps=t.max_steps,
            batch_size=t.batch_size,
            grad_accum=t.grad_accum,
            seed=t.seed,
            num_workers=cfg.data.num_workers,
            log_every=t.log_every,
            save_every=t.save_every,
            keep_last=t.keep_last,
            eval_every=t.eval_every,
            best_metric=t.best_metric,
            progress=t.progress,
            clip_grad=o.clip_grad,
            freeze_last_layer_steps=int(o.freeze_last_layer_ratio * t.max_steps),
        )


@dataclass
class TrainParts:
    """Everything the loop runs, built from the config by :func:`build_parts`.

    ``learner`` and ``optimizer`` are as Accelerate prepared them (DDP-wrapped when
    distributed); ``teacher`` is the EMA copy of the unwrapped student network.
    """

    dataset: Dataset
    transform: Callable[[Any], Any]  # per-sample: crops, or [crops, masks] (iBOT)
    batch_augment: nn.Module | None  # augment.backend=batched: crops made on the device
    learner: nn.Module
    optimizer: torch.optim.Optimizer
    teacher: nn.Module
    checkpoint: CheckpointParts
    schedules: Schedules
    collapse: CollapseGuard
    config_yaml: str
    # The teacher's backbone for the periodic evaluation, on the main process (None elsewhere);
    # every process must call it (under FSDP it gathers the shards).
    eval_backbone: Callable[[], nn.Module | None]


def build_schedules(cfg: DictConfig) -> Schedules:
    """Builder: ``optim`` and ``method`` to the per-step hyper-parameters."""
    o, m, total = cfg.optim, cfg.method, cfg.trainer.max_steps
    return Schedules(
        total_steps=total,
        lr=o.lr,
        min_lr=o.min_lr,
        warmup_steps=int(o.warmup_ratio * total),
        weight_decay=o.weight_decay,
        weight_decay_end=o.weight_decay_end,
        momentum_teacher=m.momentum_teacher,
        teacher_temp=m.teacher_temp,
        warmup_teacher_temp=m.warmup_teacher_temp,
        warmup_teacher_temp_steps=int(m.warmup_teacher_temp_ratio * total),
    )


def build_learner(
    cfg: DictConfig, channels: int, run_dir: Path, acc: Accelerator
) -> tuple[MethodParts, FrozenBase | None]:
    """The student network and its objective (with a distillation term when configured), and
    the frozen base an adapter keeps outside checkpoints (written once to ``RUN/base``)."""
    method = get_method(cfg.method.name)
    backbone = build_backbone(cfg.model, channels)
    prepare_mask_token(backbone, method.masked)
    adapter = build_adapter(cfg.adapter)
    base = FrozenBase(run_dir) if adapter.keeps_frozen_base else None
    if base is not None:
        base.attach(backbone.model, resume=cfg.trainer.resume, is_main=acc.is_main_process)
    backbone = adapter.apply(backbone)
    dtype = TRAINING_DTYPES[acc.mixed_precision]
    distill = build_distill_term(
        cfg.distill, channels, backbone.embed_dim, cfg.augment, acc.device, dtype
    )
    parts = method.build(cfg.method, backbone)
    if distill is not None:
        parts.objective.add("distill", distill, cfg.distill.weight)
    student = parts.student
    heads = nn.ModuleList(m for n, m in student.named_children() if n != "backbone")
    projector = distill.projector if distill is not None else None
    log_parameters(backbone.model, heads, run_dir if acc.is_main_process else None, projector)
    return parts, base


def build_transform(cfg: DictConfig, dataset: Dataset, parts: MethodParts) -> Callable:
    """The per-sample transform: the multi-crop augmentation, with the method's iBOT masks of
    the global crops when it has them (then samples are ``(crops, masks)``)."""
    data, aug = cfg.data, cfg.augment
    transform = build_augment(aug, dataset, data.mean, data.std)
    if parts.masking is None:
        return transform
    side = aug.global_size // parts.student.backbone.patch_size  # patches per side
    masking = parts.masking
    return MaskedCrops(
        transform, (side, side), N_GLOBAL, list(masking.ratio_min_max), masking.probability
    )


def _optimizer(cfg: DictConfig, learner: nn.Module) -> torch.optim.Optimizer:
    """AdamW over the learner's parameter groups (lr and weight decay set each step)."""
    o = cfg.optim
    groups = param_groups(learner, o.layerwise_decay, o.patch_embed_lr_mult)
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(o.betas))


def _replicated(
    cfg: DictConfig, learner: Learner, base: FrozenBase | None, acc: Accelerator
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, CheckpointParts, Callable]:
    """One process or DDP: Accelerate prepares the learner and the optimiser; the teacher
    shares the student's frozen weights (LoRA, freeze-N: one copy of the base in memory)."""
    prepared, optimizer = acc.prepare(learner, _optimizer(cfg, learner))
    # After prepare: DDP has broadcast rank 0's weights, so every rank's teacher starts equal.
    unwrapped: Learner = acc.unwrap_model(prepared)
    teacher = build_teacher(unwrapped.student, share_frozen=True)
    student_state, teacher_state = unwrapped.student, teacher
    if base is not None:  # checkpoints leave the frozen weights to RUN/base
        student_state, teacher_state = base.install(unwrapped.student, teacher)
    checkpoint = CheckpointParts(
        student_state, teacher_state, unwrapped.objective, optimizer, TrainState(), base
    )
    main = acc.is_main_process
    return prepared, optimizer, teacher, checkpoint, lambda: teacher.backbone if main else None


def _sharded(
    cfg: DictConfig, learner: Learner, base: FrozenBase | None, acc: Accelerator
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, CheckpointParts, Callable]:
    """FSDP2 (:mod:`dino_mx.engine.fsdp`): the learner and an unshared teacher copy sharded
    alike; Accelerate prepares only the optimiser; checkpoints gather full states."""
    teacher = build_teacher(learner.student)  # before sharding: every process starts equal
    # The periodic evaluation's whole copy of the teacher (main process), only if it runs.
    gathered = GatheredTeacher(teacher, acc) if cfg.trainer.eval_every > 0 else None
    shard(learner, teacher, acc)
    optimizer = acc.prepare_optimizer(_optimizer(cfg, learner))
    student_state, teacher_state = FullState(learner.student), FullState(teacher)
    if base is not None:
        student_state, teacher_state = base.install(learner.student, teacher, FullState)
    checkpoint = CheckpointParts(
        student_state,
        teacher_state,
        FullState(learner.objective),
        FullOptimizerState(learner, optimizer),
        TrainState(),
        base,
    )
    return learner, optimizer, teacher, checkpoint, gathered.backbone if gathered else lambda: None


def build_parts(cfg: DictConfig, run_dir: Path, acc: Accelerator) -> TrainParts:
    """Builder: the whole training config to the loop's parts, prepared by Accelerate."""
    dataset = build_dataset(cfg.data, "train")
    data, aug = cfg.data, cfg.augment
    batch_augment = build_batch_augment(aug, dataset.channels, data.mean, data.std)
    if batch_augment is not None:
        batch_augment.to(acc.device)
    parts, base = build_learner(cfg, dataset.channels, run_dir, acc)
    transform = build_transform(cfg, dataset, parts)
    learner = Learner(parts.student, parts.objective)
    if use_fsdp(cfg.trainer.fsdp, acc):
        learner, optimizer, teacher, checkpoint, eval_backbone = _sharded(cfg, learner, base, acc)
    else:
        learner, optimizer, teacher, checkpoint, eval_backbone = _replicated(
            cfg, learner, base, acc
        )
    if cfg.trainer.compile:  # in place, after the teacher's copy: names and checkpoints unchanged
        acc.unwrap_model(learner).student.compile()
    return TrainParts(
        dataset=dataset,
        transform=transform,
        batch_augment=batch_augment,
        learner=learner,
        optimizer=optimizer,
        teacher=teacher,
        checkpoint=checkpoint,
        schedules=build_schedules(cfg),
        collapse=build_collapse_guard(cfg.trainer, cfg.method, cfg.optim),
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        eval_backbone=eval_backbone,
    )
