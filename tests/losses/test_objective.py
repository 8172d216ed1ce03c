"""The objective: a weighted sum of terms, logged term by term, its state named by term."""

import math

import pytest
import torch

from dino_mx.data.views import Views
from dino_mx.losses.objective import InformationGate, Objective, Term, teacher_information
from dino_mx.losses.terms import DINOTerm, IBOTTerm
from dino_mx.models.multicrop import MultiCropOutput


class Constant(Term):
    def __init__(self, value: float, self_distillation: bool = True):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value))
        self.self_distillation = self_distillation

    def compute(self, student, teacher, views, teacher_temp):
        return self.value * 1.0


OUT = MultiCropOutput([torch.zeros(2, 4)], torch.zeros(2, 3))
VIEWS = Views([torch.zeros(2, 1, 4, 4)])


def test_the_total_is_the_weighted_sum_and_each_term_is_logged_unweighted():
    objective = Objective({"a": Constant(2.0), "b": Constant(3.0)}, {"a": 1.0, "b": 0.5})
    out = objective(OUT, OUT, VIEWS, 0.04)
    assert out.loss.item() == 2.0 + 0.5 * 3.0
    assert {k: v.item() for k, v in out.terms.items()} == {"a": 2.0, "b": 3.0}
    out.loss.backward()
    assert objective.a.value.grad.item() == 1.0 and objective.b.value.grad.item() == 0.5


def test_a_term_outside_self_distillation_logs_the_self_total_apart():
    terms = {"a": Constant(2.0), "b": Constant(3.0), "d": Constant(5.0, self_distillation=False)}
    objective = Objective(terms, {"a": 1.0, "b": 0.1, "d": 2.0})
    out = objective(OUT, OUT, VIEWS, 0.04)
    assert out.terms["self"].item() == pytest.approx(2.3)
    assert out.loss.item() == pytest.approx(2.3 + 10.0)
    assert "self" not in Objective({"a": Constant(1.0)}, {"a": 1.0})(OUT, OUT, VIEWS, 0.04).terms


def test_state_is_named_by_term_and_older_dinov1_checkpoints_load():
    objective = Objective({"dino": DINOTerm(4), "ibot": IBOTTerm(4)}, {"dino": 1.0, "ibot": 1.0})
    assert set(objective.state_dict()) == {"dino.center", "ibot.center"}
    dinov1 = Objective({"dino": DINOTerm(4)}, {"dino": 1.0})
    dinov1.load_state_dict({"center": torch.full((1, 4), 0.25)})  # the name before the objective
    assert torch.equal(dinov1.dino.center, torch.full((1, 4), 0.25))


def test_monitors_come_from_the_dino_terms_teacher_targets():
    objective = Objective({"dino": DINOTerm(4)}, {"dino": 1.0})
    uniform = MultiCropOutput([torch.zeros(3, 4)] * 2, torch.zeros(6, 3))
    out = objective(uniform, uniform, VIEWS, 0.04, monitor=True)
    # Zero logits and a zero centre: every target is uniform over K = 4 prototypes.
    assert out.monitors["teacher_entropy"] == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert out.monitors["teacher_batch_entropy"] == pytest.approx(out.monitors["teacher_entropy"])


def test_teacher_information_is_zero_in_either_collapse_and_log_b_for_distinct_one_hots():
    uniform = [torch.full((4, 8), 1 / 8)]
    one_prototype = [torch.eye(8)[[2, 2, 2, 2]]]
    distinct = [torch.eye(8)[[0, 1, 2, 3]]]  # four images, four prototypes: log 4 nats
    assert teacher_information(uniform).item() == pytest.approx(0.0, abs=1e-6)
    assert teacher_information(one_prototype).item() == pytest.approx(0.0, abs=1e-6)
    assert teacher_information(distinct).item() == pytest.approx(math.log(4))


def test_the_gate_follows_an_ema_of_the_information_and_opens_below_its_threshold():
    gate = InformationGate(nats=1.0, momentum=0.9)
    assert gate.factor().item() == 0.0  # no batch yet
    assert gate(torch.tensor(0.5)).item() == pytest.approx(0.5)  # the first batch sets the EMA
    # 0.9 * 0.5 + 0.1 * 1.5 = 0.6 nats: factor 1 - 0.6 / 1 = 0.4
    assert gate(torch.tensor(1.5)).item() == pytest.approx(0.4)
    assert gate.information.item() == pytest.approx(0.6)
    assert InformationGate(0.5)(torch.tensor(2.0)).item() == 0.0  # informative: closed
    assert InformationGate(0.5)(torch.tensor(0.0)).item() == 1.0  # collapsed: the full weight
    with pytest.raises(ValueError, match="> 0 nats"):
        InformationGate(0.0)


def _gated(nats: float) -> Objective:
    objective = Objective({"dino": DINOTerm(4), "k": Constant(3.0)}, {"dino": 1.0, "k": 0.5})
    objective.gate("k", InformationGate(nats))
    return objective


def test_a_gated_terms_weight_is_scaled_by_the_information_of_the_dino_targets():
    same = MultiCropOutput([torch.zeros(4, 4)] * 2, torch.zeros(8, 3))  # every image alike: I = 0
    apart = MultiCropOutput([torch.eye(4) * 10] * 2, torch.zeros(8, 3))  # one prototype each
    for teacher, factor in ((same, 1.0), (apart, 0.0)):
        objective = _gated(nats=1.0)
        dino = objective.dino(same.cls_logits, teacher.cls_logits, 0.04)  # centre still zero
        out = objective(same, teacher, VIEWS, 0.04)
        assert out.loss.item() == pytest.approx(dino.item() + 0.5 * factor * 3.0, rel=1e-5)
        assert out.terms["k"].item() == 3.0  # logged unweighted, as every term
    monitors = objective.state_monitors()
    assert monitors["k_gate"] == 0.0 and monitors["teacher_information"] > 1.0
    with pytest.raises(ValueError, match="no term 'x' to gate; terms: dino, k"):
        objective.gate("x", InformationGate(1.0))


def test_the_gates_ema_is_checkpointed_and_an_older_checkpoint_resumes_with_a_fresh_one():
    objective = _gated(nats=1.0)
    objective.gates["k"](torch.tensor(0.25))
    state = objective.state_dict()
    assert state["gates.k.information"].item() == 0.25
    restored = _gated(nats=1.0)
    restored.load_state_dict(state)
    assert restored.gates["k"].factor().item() == pytest.approx(0.75)
    older = {k: v for k, v in state.items() if not k.startswith("gates.")}
    fresh = _gated(nats=1.0)
    fresh.load_state_dict(older)  # strict: the missing EMA is filled in, not an error
    assert torch.isnan(fresh.gates["k"].information)


def test_a_step_reads_the_teacher_targets_once_for_monitors_and_gates():
    reads = []

    class Counted(DINOTerm):
        def targets(self, teacher, teacher_temp):
            reads.append(1)
            return super().targets(teacher, teacher_temp)

    objective = Objective({"dino": Counted(4), "k": Constant(3.0)}, {"dino": 1.0, "k": 0.5})
    objective.gate("k", InformationGate(1.0))
    same = MultiCropOutput([torch.zeros(4, 4)] * 2, torch.zeros(8, 3))
    out = objective(same, same, VIEWS, 0.04, monitor=True)
    assert len(reads) == 1 and out.monitors["teacher_entropy"] == pytest.approx(math.log(4))
    ungated = Objective({"k": Constant(3.0)}, {"k": 0.5})
    ungated.gate("k", InformationGate(1.0))
    with pytest.raises(ValueError, match="needs a term with teacher targets"):
        ungated(same, same, VIEWS, 0.04)
