"""DistillLoss against hand computations: the target space, each loss, pair averaging."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dino_mx.losses.distill import DistillLoss

# Layer norm of [1, -1] is [1, -1] / sqrt(1 + eps), eps = 1e-5.
T = torch.tensor([[1.0, -1.0]])
S = 1 / math.sqrt(1 + 1e-5)


def test_target_is_the_parameter_free_layer_norm_of_the_teacher_features():
    loss = DistillLoss("cosine", teacher_dim=2)
    torch.testing.assert_close(loss.target(torch.tensor([[3.0, 1.0]])), torch.tensor([[S, -S]]))
    # Scale and offset of the teacher do not matter.
    torch.testing.assert_close(loss.target(10 * T + 7), loss.target(T))


def test_cosine_is_zero_aligned_one_orthogonal_two_opposite():
    loss = DistillLoss("cosine", teacher_dim=2)
    for student, expected in (([2.0, -2.0], 0.0), ([1.0, 1.0], 1.0), ([-1.0, 1.0], 2.0)):
        value = loss([torch.tensor([student])], [T])
        assert value.item() == pytest.approx(expected, abs=1e-6)


def test_pairs_are_averaged_over_teacher_and_student_views_and_the_batch():
    loss = DistillLoss("cosine", teacher_dim=2)
    aligned, orthogonal = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 1.0]])
    # Student views: (aligned, orthogonal) -> pair losses 0 and 1 against one teacher view.
    assert loss([aligned, orthogonal], [T]).item() == pytest.approx(0.5, abs=1e-6)
    # A batch of two samples: (0 + 1) / 2, and the same with two identical teacher views.
    both = torch.cat([aligned, orthogonal])
    teacher = torch.cat([T, T])
    assert loss([both], [teacher, teacher]).item() == pytest.approx(0.5, abs=1e-6)


def test_smooth_l1_is_huber_on_the_normalised_target():
    loss = DistillLoss("smooth_l1", teacher_dim=2)
    # |d| = S < 1 on both entries: 0.5 * S^2 each.
    assert loss([torch.zeros(1, 2)], [T]).item() == pytest.approx(0.5 * S**2, rel=1e-6)
    # d = (3 - S, 0): |d| > 1 -> |d| - 0.5, and 0; mean over the two entries.
    value = loss([torch.tensor([[3.0, -S]])], [T]).item()
    assert value == pytest.approx((3 - S - 0.5) / 2, rel=1e-6)


def test_cross_entropy_matches_the_formula_on_fixed_prototypes():
    loss = DistillLoss("cross_entropy", teacher_dim=8, out_dim=16, teacher_temp=0.05, seed=3)
    w = loss.prototypes
    assert w.shape == (16, 8) and torch.allclose(w.norm(dim=-1), torch.ones(16))
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    target = F.layer_norm(teacher, (8,))
    p_t = torch.softmax(F.normalize(target, dim=-1) @ w.T / 0.05, dim=-1)
    log_p_s = torch.log_softmax(F.normalize(student, dim=-1) @ w.T / 0.1, dim=-1)
    expected = -(p_t * log_p_s).sum(-1).mean()
    torch.testing.assert_close(loss([student], [teacher]), expected)
    # Same seed, same prototypes; and they are not saved (checkpoints stay teacher-free).
    again = DistillLoss("cross_entropy", teacher_dim=8, out_dim=16, seed=3)
    assert torch.equal(again.prototypes, w) and "prototypes" not in loss.state_dict()


def test_gradient_reaches_the_student_only():
    loss = DistillLoss("cosine", teacher_dim=4)
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    loss([student], [teacher]).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bad_kind_and_widths_are_named():
    with pytest.raises(ValueError, match="cosine, smooth_l1, cross_entropy"):
        DistillLoss("mse", teacher_dim=4)
    with pytest.raises(ValueError, match="192-d features, the teacher 384-d"):
        DistillLoss("cosine", teacher_dim=384)([torch.zeros(2, 192)], [torch.zeros(2, 384)])
