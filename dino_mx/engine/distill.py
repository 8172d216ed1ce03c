"""Distillation from a frozen teacher: which network, which crops, and the loss it adds.

``distill=teacher`` adds ``distill.weight * distill_loss`` to the self-distillation loss of the
method (DINOv1 or DINOv2), with any adapter. The pieces:

- the **teacher**: any backbone the loader can build — a hub name, a local Hugging Face folder
  (what ``dino-mx export`` writes), a dino-mx run directory or checkpoint (its EMA teacher), or
  a model preset of ``configs/model/`` at a seeded random init (tests). It is frozen, in eval
  mode, run under ``torch.no_grad``, cast to the training precision, and is not a module of the
  student, so neither the optimiser, the EMA update nor a checkpoint ever sees it. Each process
  holds one copy (no gradients, no optimiser state: its weights only).
- the **projection** (:func:`~dino_mx.models.projector.build_projector`): student width ->
  teacher width, a child of the student network, trained with it and checkpointed with it.
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
from torch import Tensor, nn

from dino_mx.config import AugmentConfig, DistillConfig, config_dir
from dino_mx.engine.checkpoint import CHECKPOINTS
from dino_mx.engine.methods import N_GLOBAL
from dino_mx.eval.features import build_model_baseline, load_backbone_from_checkpoint
from dino_mx.eval.network import compose_train_config
from dino_mx.losses.distill import DistillLoss
from dino_mx.models import Backbone, adapt_input_channels, load_pretrained_model
from dino_mx.models.multicrop import encode_cls
from dino_mx.models.projector import build_projector

VIEWS = ("global", "local", "all")


def view_indices(which: str, n_views: int, n_global: int = N_GLOBAL) -> list[int]:
    """Indices of the ``global``, ``local`` or ``all`` views among ``n_views`` crops."""
    if which not in VIEWS:
        raise ValueError(f"distill views '{which}'; valid choices: {', '.join(VIEWS)}")
    if which == "global":
        return list(range(min(n_global, n_views)))
    if which == "local":
        return list(range(n_global, n_views))
    return list(range(n_views))


def _is_checkpoint(path: Path) -> bool:
    """A dino-mx run directory or one of its ``step_*`` checkpoint folders."""
    return (path / CHECKPOINTS).is_dir() or path.name.startswith("step_")


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
    if path.is_dir() and _is_checkpoint(path):
        backbone, _, _ = load_backbone_from_checkpoint(path, "teacher")
    elif not path.is_dir() and (config_dir() / "model" / f"{source}.yaml").is_file():
        cfg = compose_train_config([f"model={source}"])
        backbone = build_model_baseline(cfg, channels, seed)
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


class Distiller:
    """The frozen teacher and the loss between its features and the student's projections.

    Not an ``nn.Module`` on purpose: nothing registers it for optimisation, EMA or
    checkpointing. The student's projector lives in the student network.

    Args:
        teacher: The frozen teacher backbone, on the training device and in its precision.
        loss: The feature loss (its width is the teacher's).
        teacher_views, student_views: ``global``, ``local`` or ``all``.
    """

    def __init__(
        self, teacher: Backbone, loss: DistillLoss, teacher_views: str, student_views: str
    ):
        for views in (teacher_views, student_views):
            view_indices(views, N_GLOBAL + 1)  # validates the name
        self.teacher, self.loss = teacher, loss
        self.teacher_views, self.student_views = teacher_views, student_views

    @torch.no_grad()
    def teacher_features(self, crops: list[Tensor]) -> list[Tensor]:
        """The teacher's (B, D_t) CLS features of each crop, one backbone call per resolution."""
        return list(encode_cls(self.teacher, crops).split(crops[0].shape[0]))

    def __call__(self, crops: list[Tensor], projected: list[Tensor]) -> Tensor:
        """Args:
            crops: Every view of the micro-batch, global first, each (B, C, H, W).
            projected: The student's projected CLS features of every view, each (B, D_t).

        Returns:
            The scalar distillation loss (gradient flows into ``projected`` only).
        """
        t_idx = view_indices(self.teacher_views, len(crops))
        s_idx = view_indices(self.student_views, len(crops))
        targets = self.teacher_features([crops[i] for i in t_idx])
        return self.loss([projected[i] for i in s_idx], targets)


def check_teacher_inputs(
    teacher: Backbone, source: str, channels: int, augment: AugmentConfig | DictConfig, views: str
) -> None:
    """Fail at start, naming both shapes, when the teacher cannot take the crops it will see."""
    p = teacher.patch_size
    sizes = {"global": augment.global_size, "local": augment.local_size}
    seen = ["global", "local"] if views == "all" else [views]
    if "local" in seen and augment.n_local == 0 and augment.roi_crops == 0:
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


def build_distiller(
    cfg: DistillConfig | DictConfig,
    channels: int,
    student_dim: int,
    augment: AugmentConfig | DictConfig,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> tuple[Distiller, nn.Module] | None:
    """Builder: the ``distill`` config group to a :class:`Distiller` and the student's
    projector, or None for ``distill=none``.

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
    distiller = Distiller(teacher, loss.to(device), cfg.teacher_views, cfg.student_views)
    return distiller, projector
