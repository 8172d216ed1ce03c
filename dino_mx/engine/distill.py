"""Distillation from a frozen teacher: building the objective's ``distill`` term.

``distill=teacher`` adds ``distill.weight * distill_loss`` to the self-distillation terms of the
method (DINOv1 or DINOv2), with any adapter. The term is
:class:`~dino_mx.losses.terms.DistillTerm`; this module loads its teacher and checks it fits
the crops. The pieces:

- the **teacher**: any backbone the loader can build — a hub name, a local Hugging Face folder
  (what ``dino-mx export`` writes), a dino-mx run directory or checkpoint (its EMA teacher), or
  a model preset of ``configs/model/`` at a seeded random init (tests). It is frozen, in eval
  mode, run under ``torch.no_grad``, cast to the training precision, and is not a child module
  of anything, so neither the optimiser, the EMA update, a DDP / FSDP wrapper nor a checkpoint
  ever sees it. Each process holds one whole copy (no gradients, no optimiser state: its
  weights only), also under FSDP: it is read every step and never updated, so sharding it would
  only add an all-gather per step.
- the **projection** (:func:`~dino_mx.models.projector.build_projector`): student width ->
  teacher width, owned by the term, trained with the student and checkpointed with the
  objective (``loss.safetensors``, ``distill.projector.*``).
- the **loss** (:class:`~dino_mx.losses.distill.DistillLoss`): the projected student CLS
  features of ``student_views`` against the teacher's CLS features of ``teacher_views``.

Inputs are adapted where the backbone loader can (grey/RGB -> any channels, position-embedding
interpolation to any crop size); a crop that is not a multiple of the teacher's patch size, or a
channel count that cannot be adapted, fails at start naming both shapes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from dino_mx.checkpoint import is_run_or_checkpoint, load_backbone_from_checkpoint
from dino_mx.config import AugmentConfig, DistillConfig, compose_train_config, config_dir
from dino_mx.losses.distill import DistillLoss
from dino_mx.losses.terms import DistillTerm
from dino_mx.models import (
    Backbone,
    adapt_input_channels,
    build_seeded_backbone,
    load_pretrained_model,
)
from dino_mx.models.projector import build_projector


def load_teacher_backbone(source: str, channels: int, seed: int = 0) -> Backbone:
    """The frozen distillation teacher named by ``source``, taking ``channels``-channel inputs.

    Args:
        source: A local Hugging Face folder, a dino-mx run directory or checkpoint (its EMA
            teacher, LoRA merged), a model preset of ``configs/model/`` (random init, seeded,
            for tests), or a hub name (fails fast when offline and not cached).
        channels: The training data's channels; the teacher's patch embedding is adapted.
        seed: Seed of a random-init preset, drawn without touching the global RNG.

    Raises:
        ValueError: The teacher's input channels cannot be adapted to ``channels``.
    """
    path = Path(source).expanduser()
    if path.is_dir() and is_run_or_checkpoint(path):
        backbone, _, _ = load_backbone_from_checkpoint(path, "teacher")
    elif not path.is_dir() and (config_dir() / "model" / f"{source}.yaml").is_file():
        cfg = compose_train_config([f"model={source}"])
        backbone = build_seeded_backbone(cfg.model, channels, seed)
    else:
        backbone = Backbone(load_pretrained_model(str(path if path.is_dir() else source)))
    if backbone.num_channels != channels:
        try:
            adapt_input_channels(backbone.model, channels)
        except ValueError:
            raise ValueError(
                f"the distillation teacher '{source}' takes {backbone.num_channels}-channel "
                f"images and the data has {channels} channels: a grey or RGB model adapts to any "
                "channel count, a model of another count to none"
            ) from None
        backbone.num_channels = channels
    return backbone.eval().requires_grad_(False)


def check_teacher_inputs(
    teacher: Backbone, source: str, channels: int, augment: AugmentConfig | DictConfig, views: str
) -> None:
    """Fail at start, naming both shapes, when the teacher cannot take the crops it will see."""
    p = teacher.patch_size
    sizes = {"global": augment.global_size, "local": augment.local_size}
    seen = ["global", "local"] if views == "all" else [views]
    roi_crops = augment.get("roi_crops", 0)  # a key of augment=label_guided only
    if "local" in seen and augment.n_local == 0 and roi_crops == 0:
        raise ValueError(
            f"distill.teacher_views={views} but the augmentation makes no local crops "
            "(augment.n_local=0): use distill.teacher_views=global or all"
        )
    for kind in seen:
        side = int(sizes[kind])
        if side % p:
            raise ValueError(
                f"the distillation teacher '{source}' takes {teacher.num_channels}x(k*{p})x(k*{p}) "
                f"images (patch size {p}); the {kind} crops are {channels}x{side}x{side}. Choose "
                f"augment.{kind}_size as a multiple of {p}, or distill.teacher_views without them"
            )


def build_distill_term(
    cfg: DistillConfig | DictConfig,
    channels: int,
    student_dim: int,
    augment: AugmentConfig | DictConfig,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> DistillTerm | None:
    """Builder: the ``distill`` config group to the objective's distillation term (the frozen
    teacher, the student's projector, the loss), or None for ``distill=none``.

    Everything random (a preset teacher's weights, the projector, the prototypes) is drawn from
    ``distill.seed`` in a forked RNG, so adding a teacher changes nothing else of a run: with
    ``distill.weight=0`` the student trains exactly as without one.
    """
    choices = ("none", "teacher")
    if cfg.name not in choices:
        raise ValueError(f"distill '{cfg.name}'; valid choices: {', '.join(choices)}")
    if cfg.name == "none":
        return None
    if not cfg.model:
        raise ValueError("distill=teacher needs distill.model: a hub name, folder, run or preset")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        teacher = load_teacher_backbone(cfg.model, channels, cfg.seed)
        check_teacher_inputs(teacher, cfg.model, channels, augment, cfg.teacher_views)
        projector = build_projector(student_dim, teacher.embed_dim, cfg.projector_hidden)
    loss = DistillLoss(
        cfg.loss, teacher.embed_dim, cfg.out_dim, cfg.teacher_temp, cfg.student_temp, cfg.seed
    )
    teacher.to(device=device, dtype=dtype)
    return DistillTerm(teacher, projector, loss, cfg.teacher_views, cfg.student_views)
