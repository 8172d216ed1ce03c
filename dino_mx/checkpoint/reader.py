"""A checkpoint's backbone, without the trainer: what evaluation, export and distillation read.

Only data is read: the ``backbone.model.*`` weights of the teacher or the student, the resolved
config saved beside them, and for ``adapter=lora|freeze`` the run's frozen base. The result is
a plain Hugging Face model inside a :class:`~dino_mx.models.Backbone`, LoRA merged, in eval mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from dino_mx.checkpoint.format import (
    BACKBONE_PREFIX,
    CONFIG_FILE,
    STUDENT_FILE,
    TEACHER_FILE,
    plain_key,
)
from dino_mx.checkpoint.frozen_base import read_base_reference
from dino_mx.checkpoint.io import file_identity, read_tensors
from dino_mx.checkpoint.listing import (
    checkpoint_step,
    load_component,
    resolve_checkpoint,
    run_dir_of,
)
from dino_mx.data import build_dataset
from dino_mx.models.adapters import build_adapter
from dino_mx.models.backbone import Backbone, build_backbone, load_pretrained_model

WHICH = ("teacher", "student")


def backbone_state(ckpt_dir: Path, which: str = "teacher") -> dict[str, Tensor]:
    """The ``backbone.model.*`` weights of the teacher or student, prefix removed."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if which == "teacher":
        state = load_component(ckpt_dir, "teacher")
    else:
        state = read_tensors(ckpt_dir / STUDENT_FILE)
    # A compiled or DDP-wrapped student may carry `_orig_mod.` / `module.` in front.
    state = {plain_key(k): v for k, v in state.items()}
    sub = {k[len(BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    if not sub:
        raise KeyError(f"no '{BACKBONE_PREFIX}*' weights in the {which} of {ckpt_dir}")
    return sub


def saved_config(ckpt_dir: Path) -> DictConfig:
    """The resolved training config of a checkpoint: its own ``config.yaml``, else the run's
    (a checkpoint written before each one carried its config)."""
    config_file = ckpt_dir / CONFIG_FILE
    if not config_file.is_file() and (run := run_dir_of(ckpt_dir)) is not None:
        config_file = run / CONFIG_FILE
    cfg = OmegaConf.load(config_file)
    assert isinstance(cfg, DictConfig)
    return cfg


def load_backbone_from_checkpoint(
    ckpt: str | Path, which: str = "teacher", prefer: str = "best"
) -> tuple[Backbone, DictConfig, int]:
    """Rebuild the frozen backbone of a training checkpoint.

    Args:
        ckpt: A run directory (its best checkpoint, else its latest, is used: see ``prefer``)
            or a ``step_*`` checkpoint folder.
        which: ``teacher`` (the EMA network DINO evaluates) or ``student``.
        prefer: ``best`` or ``latest``: which checkpoint of a run directory
            (:func:`~.listing.choose_checkpoint`, which logs the choice).

    Returns:
        The :class:`Backbone` in eval mode, the resolved training config saved beside the
        checkpoint, and the optimiser step it was saved at.
    """
    ckpt_dir = resolve_checkpoint(ckpt, prefer)
    cfg = saved_config(ckpt_dir)
    state = backbone_state(ckpt_dir, which)
    base = read_base_reference(ckpt_dir)
    if base is not None:  # adapter=lora/freeze: the frozen weights live in RUN/base
        backbone = Backbone(load_pretrained_model(str(base.path)))
    else:
        channels = cfg.data.channels
        if channels is None:  # the data's channels at training time, as the patch embedding holds
            weight = state.get("embeddings.patch_embeddings.projection.weight")
            channels = weight.shape[1] if weight is not None else build_dataset(cfg.data).channels
        backbone = build_backbone(cfg.model, int(channels))
    # LoRA is merged: the result is a plain Hugging Face model computing the trained features.
    adapter = build_adapter(cfg.get("adapter"))
    adapter.load_state(backbone, state, base.frozen if base else frozenset())
    return backbone.eval().requires_grad_(False), cfg, checkpoint_step(ckpt_dir)


def checkpoint_fingerprint(ckpt_dir: Path, which: str) -> dict[str, Any]:
    """Identity of a checkpoint's weights: its path and the mtime/size of both weight files,
    so a checkpoint rewritten in place (a new file) gets a new key."""
    return {
        "checkpoint": str(ckpt_dir.resolve()),
        "which": which,
        STUDENT_FILE: file_identity(ckpt_dir / STUDENT_FILE),
        TEACHER_FILE: file_identity(ckpt_dir / TEACHER_FILE),
    }
