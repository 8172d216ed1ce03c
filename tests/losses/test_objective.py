"""The objective: a weighted sum of terms, logged term by term, its state named by term."""

import pytest
import torch

from dino_mx.data.views import Views
from dino_mx.losses.objective import Objective, Term
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
