import math

import pytest
import torch

from dino_mx.losses import DINOLoss


def hand_loss(student, teacher, center, student_temp, teacher_temp):
    """DINO's formula written element by element with Python floats."""
    total, pairs = 0.0, 0
    for iq, t in enumerate(teacher):
        for iv, s in enumerate(student):
            if iv == iq:
                continue
            batch = 0.0
            for b in range(t.shape[0]):
                tz = [(t[b, k].item() - center[k]) / teacher_temp for k in range(t.shape[1])]
                sz = [s[b, k].item() / student_temp for k in range(s.shape[1])]
                t_norm = sum(math.exp(z) for z in tz)
                s_lse = math.log(sum(math.exp(z) for z in sz))
                batch += sum(-(math.exp(a) / t_norm) * (c - s_lse) for a, c in zip(tz, sz))
            total += batch / t.shape[0]
            pairs += 1
    return total / pairs


def test_loss_equals_hand_computation_over_cross_view_pairs():
    torch.manual_seed(0)
    student = [torch.randn(3, 5) for _ in range(4)]  # 2 global + 2 local views
    teacher = [torch.randn(3, 5) for _ in range(2)]
    loss_fn = DINOLoss(5, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.randn(1, 5))
    center = loss_fn.center[0].tolist()
    expected = hand_loss(student, teacher, center, 0.1, 0.04)
    assert loss_fn(student, teacher, teacher_temp=0.04).item() == pytest.approx(expected, abs=1e-6)


def test_center_follows_its_ema_formula():
    torch.manual_seed(1)
    teacher = [torch.randn(4, 6) for _ in range(2)]
    loss_fn = DINOLoss(6, center_momentum=0.8)
    c0 = torch.randn(1, 6)
    loss_fn.center.copy_(c0)
    loss_fn([t.clone() for t in teacher], teacher, teacher_temp=0.05)
    batch_mean = torch.cat(teacher).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, 0.8 * c0 + 0.2 * batch_mean, atol=1e-6, rtol=0)


def test_loss_uses_centre_before_update_and_no_self_pairs():
    # With identical views and a sharp teacher, the loss is the cross-entropy of one pair type:
    # the 2 globals never predict themselves, so 2 teacher views x 1 other global = 2 pairs.
    t = torch.tensor([[10.0, 0.0]])
    s = [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])]
    loss = DINOLoss(2)(s, [t, t], teacher_temp=1.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # uniform student


def test_gradient_flows_to_student_only():
    student = [torch.randn(2, 4, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(2, 4, requires_grad=True) for _ in range(2)]
    DINOLoss(4)(student, teacher, 0.04).backward()
    assert all(s.grad is not None for s in student)
    assert all(t.grad is None for t in teacher)


@pytest.mark.parametrize(
    "student, teacher, temp, match",
    [
        ([torch.randn(2, 4)], [torch.randn(2, 4)] * 2, 0.04, "teacher views"),
        ([torch.randn(2, 4)] * 3, [torch.randn(2, 5)] * 2, 0.04, "every view"),
        ([torch.randn(2, 4)] * 3, [torch.randn(2, 4)] * 2, 0.0, "teacher_temp"),
        ([], [], 0.04, "non-empty"),
    ],
)
def test_bad_inputs_raise_with_a_reason(student, teacher, temp, match):
    with pytest.raises(ValueError, match=match):
        DINOLoss(4)(student, teacher, temp)
