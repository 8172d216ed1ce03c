import torch
from torch import nn

from dino_mx.engine.ema import build_teacher, ema_update


def test_ema_update_equals_formula_per_parameter():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    teacher = build_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    ema_update(teacher, student, momentum=0.9)
    for name, s in student.named_parameters():
        expected = 0.9 * before[name] + 0.1 * s.detach()
        torch.testing.assert_close(dict(teacher.named_parameters())[name], expected)


def test_teacher_gets_no_gradient_and_skips_frozen_student_weights():
    student = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    student[0].requires_grad_(False)
    teacher = build_teacher(student)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        student[0].weight.add_(1.0)  # frozen: the EMA must leave the teacher's copy alone
    frozen_before = teacher[0].weight.clone()
    loss = student(torch.randn(5, 4)).sum() + teacher(torch.randn(5, 4)).sum()
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    ema_update(teacher, student, 0.5)
    assert torch.equal(teacher[0].weight, frozen_before)
