"""Methods: what the student network is and which weighted terms its objective sums.

- ``dinov1`` — DINO (Caron et al., ICCV 2021): the CLS self-distillation loss over multi-crop.
- ``dinov2`` — DINOv2 (Oquab et al., 2023): the same CLS loss, plus the iBOT masked-patch loss
  (Zhou et al., ICLR 2022) on block-masked global crops, plus the KoLeo regulariser
  (Sablayrolles et al., ICLR 2019) on the student's CLS features.

A method is an entry of :data:`METHODS`: whether its student sees masked patches (which decides,
before the adapter is applied, whether the backbone's mask token trains), and a builder of the
heads, the objective and the data's iBOT masks. The training step is the
same for both (:class:`~dino_mx.engine.learner.Learner`). Both work with any backbone (ViT or
DINOv2, pretrained or not): cross-training is a config choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from dino_mx.config import MethodConfig
from dino_mx.losses.objective import InformationGate, Objective
from dino_mx.losses.terms import DINOTerm, IBOTTerm, KoLeoTerm
from dino_mx.models import Backbone, build_head
from dino_mx.models.multicrop import MultiCropModel


@dataclass(frozen=True)
class Masking:
    """iBOT's block masks of the global crops (:class:`~dino_mx.data.MaskedCrops`)."""

    ratio_min_max: tuple[float, float]  # share of a masked crop's patches that are masked
    probability: float  # share of global crops that are masked at all


@dataclass
class MethodParts:
    """What a method builds around the backbone."""

    student: MultiCropModel
    objective: Objective
    masking: Masking | None  # None: the batches carry no masks


def dinov1(cfg: MethodConfig | DictConfig, backbone: Backbone) -> MethodParts:
    """DINO: cross-view CLS self-distillation (Caron et al., 2021); with ``koleo_weight`` > 0
    also DINOv2's KoLeo (what keeps a small dataset's features apart, docs/transfer.md)."""
    student = MultiCropModel(backbone, build_head(cfg.head, backbone.embed_dim))
    dino = DINOTerm(cfg.head.out_dim, cfg.student_temp, cfg.center_momentum, cfg.centering)
    objective = Objective({"dino": dino}, {"dino": cfg.dino_weight})
    if cfg.koleo_weight > 0:
        objective.add("koleo", KoLeoTerm(), cfg.koleo_weight)
    _gate_koleo(objective, cfg)
    return MethodParts(student, objective, None)


def dinov2(cfg: MethodConfig | DictConfig, backbone: Backbone) -> MethodParts:
    """DINOv2: DINO + iBOT + KoLeo (Oquab et al., 2023). The iBOT head is the DINO head unless
    ``ibot.separate_head``; KoLeo is averaged over the global crops."""
    ibot = cfg.ibot
    head = build_head(cfg.head, backbone.embed_dim)
    ibot_head = build_head(ibot.head, backbone.embed_dim) if ibot.separate_head else None
    ibot_dim = ibot.head.out_dim if ibot.separate_head else cfg.head.out_dim
    temp, momentum = cfg.student_temp, cfg.center_momentum
    terms = {
        "dino": DINOTerm(cfg.head.out_dim, temp, momentum, cfg.centering),
        "ibot": IBOTTerm(ibot_dim, temp, momentum, cfg.centering),
        "koleo": KoLeoTerm(),
    }
    weights = {"dino": cfg.dino_weight, "ibot": ibot.weight, "koleo": cfg.koleo_weight}
    masking = Masking(
        tuple(ibot.mask_ratio_min_max), ibot.mask_sample_probability if ibot.weight > 0 else 0.0
    )
    student = MultiCropModel(backbone, head, ibot_head)
    objective = Objective(terms, weights)
    _gate_koleo(objective, cfg)
    return MethodParts(student, objective, masking)


def _gate_koleo(objective: Objective, cfg: MethodConfig | DictConfig) -> None:
    """``method.koleo_gate``: KoLeo's weight follows the teacher's information about the image
    (:class:`~dino_mx.losses.objective.InformationGate`)."""
    gate = cfg.get("koleo_gate")
    if gate is not None and "koleo" in objective.weights:
        objective.gate("koleo", InformationGate(gate))


@dataclass(frozen=True)
class Method:
    """``masked``: the student sees masked patches (iBOT), so the mask token trains.
    ``build``: the heads, objective and masking around the (adapted) backbone."""

    masked: bool
    build: Callable[[MethodConfig | DictConfig, Backbone], MethodParts]


METHODS: dict[str, Method] = {
    "dinov1": Method(masked=False, build=dinov1),
    "dinov2": Method(masked=True, build=dinov2),
}


def get_method(name: str) -> Method:
    """The entry of :data:`METHODS` named by ``method.name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; valid choices: {', '.join(METHODS)}")
    return METHODS[name]


def prepare_mask_token(backbone: Backbone, masked: bool) -> None:
    """Before the adapter: a masked method trains the mask token (the model's own, else one of
    the wrapper); an unmasked one freezes it — an unused trainable parameter is an error under
    DDP, and a token nothing trains should not pretend to."""
    if masked:
        backbone.enable_mask_token()
        return
    for name, p in backbone.named_parameters():
        if name.endswith("mask_token"):
            p.requires_grad_(False)
