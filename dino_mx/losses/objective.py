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
import torch.distributed as dist
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

    def targets(self, teacher: MultiCropOutput, teacher_temp: float) -> list[Tensor] | None:
        """The teacher's (B, K) target distributions per global crop, for a term that has them
        (DINO's CLS targets; default: none). They feed the collapse monitors and the gates."""
        return None

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


class InformationGate(nn.Module):
    """Scales a term's weight by how little the teacher's targets tell the images apart.

    The teacher's information about the image, ``I = H(mean_b p_b) - mean_b H(p_b)`` nats over
    a batch of targets ``p_b`` (the batch entropy minus the mean per-sample entropy: the mutual
    information between an image of the batch and its prototype), is 0 in both of DINO's
    collapses — every image gets the same target, uniform or one prototype — and 1-2 nats in
    runs that learn (docs/transfer.md). The gate keeps an EMA of ``I`` and gives the factor
    ``clamp(1 - I / nats, 0, 1)``: nothing while ``I >= nats``, the full weight at ``I = 0``.
    On KoLeo (``method.koleo_gate``) it is a regulariser that acts where the run needs it: a
    dataset whose teacher drifts to uniform outputs gets it, one that learns without it does not.

    Args:
        nats: Information at and above which the factor is 0 (> 0).
        momentum: EMA momentum of ``I`` per micro-batch (the DINO centre's 0.9: ~10 batches).

    The EMA is a buffer: checkpointed with the objective, so a resumed run gates as it would have.
    Under several processes ``I`` is averaged over them first, so every process weighs alike.
    """

    def __init__(self, nats: float, momentum: float = 0.9):
        super().__init__()
        if not nats > 0:
            raise ValueError(f"the gate's information threshold must be > 0 nats, got {nats}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"the gate's momentum must be in [0, 1), got {momentum}")
        self.nats, self.momentum = float(nats), float(momentum)
        self.register_buffer("information", torch.tensor(float("nan")))  # NaN: no batch yet
        # A checkpoint saved before the gate existed resumes with a fresh one.
        self._register_load_state_dict_pre_hook(self._fresh_if_missing)

    def _fresh_if_missing(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        state.setdefault(prefix + "information", self.information.clone())

    @torch.no_grad()
    def forward(self, information: Tensor) -> Tensor:
        """Update the EMA with this batch's ``information`` (scalar, nats); the factor."""
        now = information.detach().float().reshape(()).to(self.information.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(now)  # gloo has no AVG
            now = now / dist.get_world_size()
        m = self.momentum
        first = torch.isnan(self.information)
        self.information.copy_(torch.where(first, now, m * self.information + (1 - m) * now))
        return self.factor()

    def factor(self) -> Tensor:
        """``clamp(1 - EMA / nats, 0, 1)``; 0 before the first batch."""
        return (1.0 - self.information / self.nats).nan_to_num(0.0).clamp(0.0, 1.0)


class Objective(nn.Module):
    """``sum_i weight_i * term_i``, the self-distillation terms first; a gated term's weight is
    also scaled by its :class:`InformationGate`, fed by the first term that has teacher targets.

    Args:
        terms: Name -> term, in the order they are summed and logged.
        weights: Name -> weight of every term.
    """

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, float]):
        super().__init__()
        self.weights: dict[str, float] = {}
        self.gates = nn.ModuleDict()  # term name -> InformationGate
        for name, term in terms.items():
            self.add(name, term, weights[name])
        # Checkpoints of dino-mx before the objective named DINOv1's centre `center`.
        self._register_load_state_dict_pre_hook(_rename_legacy_center)

    def add(self, name: str, term: Term, weight: float) -> None:
        """Append a term (the distillation term is added after the method's own)."""
        self.add_module(name, term)
        self.weights[name] = float(weight)

    def gate(self, name: str, gate: InformationGate) -> None:
        """Scale term ``name``'s weight by ``gate`` (``method.koleo_gate``)."""
        if name not in self.weights:
            raise ValueError(f"no term '{name}' to gate; terms: {', '.join(self.weights)}")
        self.gates[name] = gate

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
        """The weighted total of every term; ``monitor`` also returns the collapse monitors of the
        teacher's targets (:func:`teacher_entropies`)."""
        terms = self.terms()
        # The targets are read once, before the terms update their centres, for the monitors
        # and the gates (under Sinkhorn-Knopp each read is a solve with its own all-reduces).
        probs = self._targets(terms, teacher, teacher_temp) if monitor or self.gates else None
        monitors = teacher_entropies(probs) if monitor and probs is not None else {}
        weights: dict[str, Any] = dict(self.weights)
        if self.gates:
            if probs is None:
                raise ValueError("a gated term needs a term with teacher targets (dino)")
            information = teacher_information(probs)
            weights |= {
                name: weights[name] * gate(information) for name, gate in self.gates.items()
            }
        values = {
            name: t.compute(student, teacher, views, teacher_temp) for name, t in terms.items()
        }
        own = [n for n, t in terms.items() if t.self_distillation]
        loss = sum(weights[n] * values[n] for n in own)
        logged = {n: v.detach() for n, v in values.items()}
        others = [n for n in terms if n not in own]
        if others:
            logged["self"] = loss.detach()
            loss = loss + sum(weights[n] * values[n] for n in others)
        return ObjectiveOutput(loss, logged, monitors)

    @staticmethod
    def _targets(
        terms: Mapping[str, Term], teacher: MultiCropOutput, teacher_temp: float
    ) -> list[Tensor] | None:
        """The first term's teacher targets that has them (the DINO term's), else None."""
        for term in terms.values():
            probs = term.targets(teacher, teacher_temp)
            if probs is not None:
                return probs
        return None

    def state_monitors(self) -> dict[str, float]:
        """Every term's state monitors (centre norms)."""
        out: dict[str, float] = {}
        for term in self.terms().values():
            out |= term.state_monitors()
        for name, gate in self.gates.items():  # the EMA the gates read, and each one's factor
            out["teacher_information"] = gate.information.item()
            out[f"{name}_gate"] = gate.factor().item()
        return out


def _rename_legacy_center(state: dict[str, Any], prefix: str, *args: Any) -> None:
    if prefix + "center" in state and prefix + "dino.center" not in state:
        state[prefix + "dino.center"] = state.pop(prefix + "center")


def _entropies(probs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(mean per-sample entropy, entropy of the mean) of (B, K) distributions, in nats."""
    p = torch.cat(probs).float()  # (n_views * B, K)
    per_sample = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    mean = p.mean(0)
    batch = -(mean * torch.log(mean.clamp_min(1e-12))).sum()
    return per_sample, batch


@torch.no_grad()
def teacher_entropies(probs: list[Tensor]) -> dict[str, float]:
    """Collapse monitors of the teacher's (B, K) target distributions.

    ``teacher_entropy``: the mean per-sample entropy (log K when uniform: collapse to uniform).
    ``teacher_batch_entropy``: the entropy of the batch-mean distribution (0 when every sample
    picks one prototype).
    """
    per_sample, batch = _entropies(probs)
    return {"teacher_entropy": per_sample.item(), "teacher_batch_entropy": batch.item()}


@torch.no_grad()
def teacher_information(probs: list[Tensor]) -> Tensor:
    """The batch entropy minus the mean per-sample entropy of (B, K) targets: how many nats a
    target says about which image it came from (0 in either collapse; at most log of the row
    count). 0-d tensor."""
    per_sample, batch = _entropies(probs)
    return batch - per_sample
