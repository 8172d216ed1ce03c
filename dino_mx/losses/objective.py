"""The training objective: a weighted sum of loss terms over one multi-crop output.

DINOv1 is the objective ``{dino: 1}``; DINOv2 adds ``ibot`` and ``koleo``; a frozen distillation
teacher adds ``distill`` (:mod:`dino_mx.losses.terms`). Each term sees the same three things —
the student's and the EMA teacher's :class:`~dino_mx.models.multicrop.MultiCropOutput` and the
micro-batch's :class:`~dino_mx.data.views.Views` — and returns a scalar, so a new loss is one
new :class:`Term` and one line in the method that uses it (:mod:`dino_mx.engine.methods`).

The objective is an ``nn.Module`` whose children are the terms, registered under their names:
its state dict is the loss state a checkpoint keeps (``dino.center``, ``ibot.center``, the
distillation projector's weights), and a term with trainable weights trains with the student.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dino_mx.data.views import Views
from dino_mx.models.multicrop import MultiCropOutput


class Term(nn.Module, ABC):
    """One loss of the objective. ``self_distillation``: False for a term that is not part of
    DINO's self-distillation (the frozen-teacher distillation), whose sum is then also logged
    apart as ``loss/self``."""

    self_distillation: bool = True

    @abstractmethod
    def compute(
        self, student: MultiCropOutput, teacher: MultiCropOutput, views: Views, teacher_temp: float
    ) -> Tensor:
        """The term's scalar loss for one micro-batch (unweighted)."""

    def monitors(self, teacher: MultiCropOutput, teacher_temp: float) -> dict[str, float]:
        """Collapse monitors of the teacher's targets, when the step logs (default: none)."""
        return {}

    def state_monitors(self) -> dict[str, float]:
        """Scalars of the term's state worth logging (centre norms; default: none)."""
        return {}


@dataclass
class ObjectiveOutput:
    """One micro-batch's result.

    Attributes:
        loss: The weighted total, to backpropagate.
        terms: Each term unweighted and detached, logged as ``loss/<name>``; with a term that is
            not self-distillation, also ``self``: the weighted self-distillation total.
        monitors: The terms' collapse monitors (when asked for).
    """

    loss: Tensor
    terms: dict[str, Tensor]
    monitors: dict[str, float] = field(default_factory=dict)


class Objective(nn.Module):
    """``sum_i weight_i * term_i``, the self-distillation terms first.

    Args:
        terms: Name -> term, in the order they are summed and logged.
        weights: Name -> weight of every term.
    """

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, float]):
        super().__init__()
        self.weights: dict[str, float] = {}
        for name, term in terms.items():
            self.add(name, term, weights[name])
        # Checkpoints of dino-mx before the objective named DINOv1's centre `center`.
        self._register_load_state_dict_pre_hook(_rename_legacy_center)

    def add(self, name: str, term: Term, weight: float) -> None:
        """Append a term (the distillation term is added after the method's own)."""
        self.add_module(name, term)
        self.weights[name] = float(weight)

    def terms(self) -> dict[str, Term]:
        return {name: term for name, term in self.named_children() if isinstance(term, Term)}

    def forward(
        self,
        student: MultiCropOutput,
        teacher: MultiCropOutput,
        views: Views,
        teacher_temp: float,
        monitor: bool = False,
    ) -> ObjectiveOutput:
        """The weighted total of every term; ``monitor`` also returns the terms' monitors."""
        terms = self.terms()
        monitors: dict[str, float] = {}
        if monitor:
            for term in terms.values():
                monitors |= term.monitors(teacher, teacher_temp)
        values = {
            name: t.compute(student, teacher, views, teacher_temp) for name, t in terms.items()
        }
        own = [n for n, t in terms.items() if t.self_distillation]
        loss = sum(self.weights[n] * values[n] for n in own)
        logged = {n: v.detach() for n, v in values.items()}
        others = [n for n in terms if n not in own]
        if others:
            logged["self"] = loss.detach()
            loss = loss + sum(self.weights[n] * values[n] for n in others)
        return ObjectiveOutput(loss, logged, monitors)

    def state_monitors(self) -> dict[str, float]:
        """Every term's state monitors (centre norms)."""
        out: dict[str, float] = {}
        for term in self.terms().values():
            out |= term.state_monitors()
        return out


def _rename_legacy_center(state: dict[str, Any], prefix: str, *args: Any) -> None:
    if prefix + "center" in state and prefix + "dino.center" not in state:
        state[prefix + "dino.center"] = state.pop(prefix + "center")


@torch.no_grad()
def teacher_entropies(probs: list[Tensor]) -> dict[str, float]:
    """Collapse monitors of the teacher's (B, K) target distributions.

    ``teacher_entropy``: the mean per-sample entropy (log K when uniform: collapse to uniform).
    ``teacher_batch_entropy``: the entropy of the batch-mean distribution (0 when every sample
    picks one prototype).
    """
    p = torch.cat(probs).float()  # (n_views * B, K)
    per_sample = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    mean = p.mean(0)
    batch = -(mean * torch.log(mean.clamp_min(1e-12))).sum()
    return {"teacher_entropy": per_sample.item(), "teacher_batch_entropy": batch.item()}
