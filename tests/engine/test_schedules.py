import math

import pytest

from dino_mx.engine.schedules import cosine_schedule, linear_warmup, teacher_momentum


def test_lr_schedule_endpoints_and_midpoint():
    total, warmup, base, final = 100, 10, 5e-4, 1e-6
    assert cosine_schedule(0, total, base, final, warmup) == 0.0
    assert cosine_schedule(5, total, base, final, warmup) == pytest.approx(base / 2)
    assert cosine_schedule(warmup, total, base, final, warmup) == pytest.approx(base)
    assert cosine_schedule(total - 1, total, base, final, warmup) == pytest.approx(final)
    # halfway through the decay the cosine is at its mean
    mid = warmup + (total - 1 - warmup) / 2
    assert cosine_schedule(int(mid), total, base, final, warmup) == pytest.approx(
        final + 0.5 * (base - final) * (1 + math.cos(math.pi * int(mid - warmup) / 89))
    )


def test_weight_decay_and_momentum_closed_forms():
    assert cosine_schedule(0, 50, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_schedule(49, 50, 0.04, 0.4) == pytest.approx(0.4)
    assert teacher_momentum(0, 50, 0.996) == pytest.approx(0.996)
    assert teacher_momentum(49, 50, 0.996) == pytest.approx(1.0)
    s = 20
    expected = 1 - (1 - 0.996) * (math.cos(math.pi * s / 49) + 1) / 2
    assert teacher_momentum(s, 50, 0.996) == pytest.approx(expected)


def test_teacher_temperature_warmup_endpoints():
    assert linear_warmup(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(30, 30, 0.04, 0.07) == pytest.approx(0.07)
    assert linear_warmup(99, 30, 0.04, 0.07) == pytest.approx(0.07)


def test_bad_schedule_lengths_raise():
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(0, 10, 1.0, 0.0, warmup_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_schedule(0, 0, 1.0, 0.0)
