"""Fault: the teacher collapses during a real tiny run (trainer.on_collapse=warn|stop|off).

Two forced collapses on the smoke config (K = 64, log K = 4.159):

- uniform: ``method.teacher_temp=10`` flattens every target, logits of a weight-normalised head
  lie in [-1, 1], so the per-sample entropy is log K from the first step;
- one prototype: a near-frozen centre (``center_momentum=0.99999``), a sharp teacher that
  copies the student (temperature 0.01, ``momentum_teacher=0``) and ``optim.lr=0.01`` put every
  sample on one prototype (batch entropy 0.000) from step 1 on.
"""

import json
import logging
import math

import pytest

from dino_mx.checkpoint import latest_checkpoint, list_checkpoints, load_component
from dino_mx.train import train

UNIFORM = ("method.teacher_temp=10", "method.warmup_teacher_temp=10")
ONE_PROTOTYPE = (
    "method.teacher_temp=0.01",
    "method.warmup_teacher_temp=0.01",
    "method.center_momentum=0.99999",
    "method.momentum_teacher=0",
    "optim.lr=0.01",
)


def collapse_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "dino_mx.engine.collapse"]


def logged_steps(run):
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_uniform_teacher_warns_once_and_the_run_completes(tmp_path, smoke_config, caplog):
    run = tmp_path / "run"
    cfg = smoke_config(run, *UNIFORM, "trainer.collapse_window=2", "trainer.max_steps=5")
    with caplog.at_level(logging.WARNING):
        last = train(cfg, run)
    assert last["step"] == 4 and last["teacher_entropy"] >= 0.98 * math.log(64)
    [line] = collapse_lines(caplog)  # steps 1..4 all qualify: still one line
    assert line.startswith("teacher output near uniform: per-sample entropy 4.159 >= 0.98 log K")
    assert "K = 64) over the last 2 logged steps (to step 1)" in line
    for knob in ("method.teacher_temp (now 10)", "method.momentum_teacher", "optim.lr"):
        assert knob in line
    assert "method.head.out_dim (now 64)" in line
    assert [p.name for p in list_checkpoints(run)] == ["step_0000004", "step_0000005"]


@pytest.mark.parametrize(
    "overrides",
    [pytest.param((*UNIFORM, "trainer.on_collapse=off"), marks=pytest.mark.slow), ()],
    ids=["off", "healthy"],
)
def test_off_or_a_healthy_teacher_say_nothing(tmp_path, smoke_config, caplog, overrides):
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        last = train(smoke_config(run, "trainer.collapse_window=1", *overrides), run)
    assert last["step"] == 3 and collapse_lines(caplog) == []


def test_uniform_teacher_stop_keeps_the_checkpoints_saved_before(tmp_path, smoke_config, caplog):
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        *UNIFORM,
        "trainer.on_collapse=stop",
        "trainer.collapse_window=3",
        "trainer.save_every=1",
        "trainer.max_steps=6",
    )
    with caplog.at_level(logging.WARNING):
        last = train(cfg, run)
    # Collapsed at logged steps 0, 1, 2: reported after step 2, before its checkpoint (3).
    assert last["step"] == 2
    assert [e["step"] for e in logged_steps(run)] == [0, 1, 2]
    [line] = collapse_lines(caplog)
    assert "near uniform" in line and "(to step 2)" in line
    assert line.endswith(
        "trainer.on_collapse=stop: stopped without saving this step, "
        "the last checkpoint is step_0000002"
    )
    assert [p.name for p in list_checkpoints(run)] == ["step_0000001", "step_0000002"]
    latest = latest_checkpoint(run)
    assert latest.name == "step_0000002"
    assert load_component(latest, "train_state")["step"] == 2 < cfg.trainer.max_steps


@pytest.mark.slow
def test_one_prototype_stop_ends_the_run_early(tmp_path, smoke_config, caplog):
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        *ONE_PROTOTYPE,
        "trainer.on_collapse=stop",
        "trainer.collapse_window=2",
        "trainer.max_steps=8",
    )
    with caplog.at_level(logging.WARNING):
        last = train(cfg, run)
    entries = logged_steps(run)
    # No lr warmup at 8 steps: one prototype from step 1, reported at step 2 (window 2).
    onehot = [e["teacher_batch_entropy"] <= 0.1 * math.log(64) for e in entries]
    assert onehot == [False, True, True] and last["step"] == 2
    [line] = collapse_lines(caplog)
    assert line.startswith("teacher collapsed onto one prototype: batch entropy 0.000 <= 0.1 log K")
    assert "raise method.teacher_temp (now 0.01)" in line and "lower optim.lr (now 0.01)" in line
    assert "raise method.koleo_weight (now 0)" in line  # the smoke config has no KoLeo
    # Saved every 2 steps: step_0000002 before the report, nothing after it.
    assert [p.name for p in list_checkpoints(run)] == ["step_0000002"]
    assert load_component(latest_checkpoint(run), "train_state")["step"] == 2


def test_a_uniform_teacher_opens_the_koleo_gate_in_a_real_run(tmp_path, smoke_config):
    run = tmp_path / "run"
    gated = ("method.koleo_weight=0.5", "method.koleo_gate=1", "trainer.max_steps=3")
    train(smoke_config(run, *UNIFORM, *gated), run)
    entries = logged_steps(run)
    assert len(entries) == 3
    for e in entries:
        # Every target alike: the teacher says ~0 nats about the image, the gate is wide open
        # and KoLeo counts at 0.5 x the gate's factor in the loss that trained.
        assert e["teacher_information"] == pytest.approx(0.0, abs=1e-3)
        assert e["koleo_gate"] == pytest.approx(1.0 - e["teacher_information"])
        expected = e["loss/dino"] + 0.5 * e["koleo_gate"] * e["loss/koleo"]
        assert e["loss"] == pytest.approx(expected, rel=1e-5)
