"""iBOT patch loss: the hand formula over masked positions only, centring, edge cases."""

import math

import pytest
import torch

from dino_mx.losses import iBOTPatchLoss, sinkhorn_knopp


def hand_loss(student, teacher, masks, center, student_temp, teacher_temp):
    """Per image: mean over its masked patches of -sum_k q_k log p_k; then mean over images
    (an image without masked patches adds 0). Python floats, element by element."""
    B, N, K = student.shape
    total = 0.0
    for b in range(B):
        positions = [n for n in range(N) if masks[b, n]]
        image = 0.0
        for n in positions:
            tz = [(teacher[b, n, k].item() - center[k]) / teacher_temp for k in range(K)]
            sz = [student[b, n, k].item() / student_temp for k in range(K)]
            t_norm = sum(math.exp(z) for z in tz)
            s_lse = math.log(sum(math.exp(z) for z in sz))
            image += sum(-(math.exp(a) / t_norm) * (c - s_lse) for a, c in zip(tz, sz))
        total += image / max(len(positions), 1)
    return total / B


def example(seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 5, 4, generator=g)  # (B, N, K)
    teacher = torch.randn(3, 5, 4, generator=g)
    masks = torch.tensor(
        [[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1]], dtype=torch.bool
    )  # image 2 unmasked
    return student, teacher, masks


def test_loss_equals_hand_computation_over_masked_positions_only():
    student, teacher, masks = example()
    loss_fn = iBOTPatchLoss(4, student_temp=0.1)
    loss_fn.center.copy_(torch.randn(1, 4))
    center = loss_fn.center[0].tolist()
    expected = hand_loss(student, teacher, masks, center, 0.1, 0.05)
    # The masked rows only, in masks.nonzero() order: what the trainer passes.
    got = loss_fn(student[masks], teacher[masks], masks, teacher_temp=0.05)
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_unmasked_positions_do_not_matter_and_dense_input_selects_them():
    student, teacher, masks = example()
    loss = iBOTPatchLoss(4)(student, teacher, masks, 0.05)
    student2, teacher2 = student.clone(), teacher.clone()
    student2[~masks] = 100.0 * torch.randn_like(student2[~masks])
    teacher2[~masks] = -50.0
    assert iBOTPatchLoss(4)(student2, teacher2, masks, 0.05).item() == pytest.approx(loss.item())


def test_nothing_masked_contributes_exactly_zero_and_keeps_the_centre():
    B, N, K = 2, 6, 3
    masks = torch.zeros(B, N, dtype=torch.bool)
    student = torch.randn(0, K, requires_grad=True)
    loss_fn = iBOTPatchLoss(K)
    loss_fn.center.fill_(0.5)
    loss = loss_fn(student, torch.randn(0, K), masks, 0.04)
    assert loss.item() == 0.0
    loss.backward()  # still a graph: DDP sees the iBOT head used
    assert torch.equal(student.grad, torch.zeros(0, K))
    assert torch.equal(loss_fn.center, torch.full((1, K), 0.5))
    sk = iBOTPatchLoss(K, centering="sinkhorn_knopp")
    assert sk(torch.randn(0, K), torch.randn(0, K), masks, 0.04).item() == 0.0


def test_centre_follows_the_ema_of_masked_teacher_logits():
    student, teacher, masks = example(seed=1)
    loss_fn = iBOTPatchLoss(4, center_momentum=0.8)
    c0 = torch.randn(1, 4)
    loss_fn.center.copy_(c0)
    loss_fn(student[masks], teacher[masks], masks, 0.05)
    expected = 0.8 * c0 + 0.2 * teacher[masks].mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected, atol=1e-6, rtol=0)


def test_sinkhorn_targets_are_sinkhorn_over_the_masked_patches():
    student, teacher, masks = example(seed=2)
    s, t = student[masks], teacher[masks]
    q = sinkhorn_knopp(t, 0.05)  # (M, K)
    per_image = masks.sum(-1).clamp_min(1).float()
    weights = (1 / per_image)[masks.nonzero()[:, 0]]
    ce = -(q * torch.log_softmax(s / 0.1, -1)).sum(-1)
    expected = (ce * weights).sum() / masks.shape[0]
    got = iBOTPatchLoss(4, centering="sinkhorn_knopp")(s, t, masks, 0.05)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)


def test_gradient_reaches_the_student_only():
    student, teacher, masks = example()
    s = student[masks].requires_grad_()
    t = teacher[masks].requires_grad_()
    iBOTPatchLoss(4)(s, t, masks, 0.05).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize(
    "student, masks, match",
    [
        (torch.randn(3, 4), torch.ones(2, 5), "bool"),
        (torch.randn(3, 4), torch.ones(2, 5, dtype=torch.bool), "10 masked patches"),
        (torch.randn(10, 5), torch.ones(2, 5, dtype=torch.bool), r"\(10, 4\)"),
    ],
)
def test_bad_inputs_raise_with_a_reason(student, masks, match):
    with pytest.raises(ValueError, match=match):
        iBOTPatchLoss(4)(student, student.clone(), masks, 0.05)
