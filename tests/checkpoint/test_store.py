"""Saving and resuming the training state: the files of the format, exact round trips, and a
crash mid-save that leaves the last good checkpoint in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from dino_mx.checkpoint import (
    CheckpointParts,
    TrainState,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    store,
)

FILES = {
    "model.safetensors",
    "teacher.safetensors",
    "loss.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "rng_state_0.safetensors",
    "rng_state_0.json",
    "train_state.json",
    "config.yaml",
}


def _parts(acc: Accelerator, seed: int) -> CheckpointParts:
    """A Linear student and teacher, a centre buffer and AdamW after one step."""
    torch.manual_seed(seed)
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    loss = torch.nn.Module()
    loss.register_buffer("center", torch.randn(1, 2))
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return CheckpointParts(student, teacher, loss, optimizer, TrainState(3))


def test_a_save_writes_the_documented_files_and_loads_back_exactly(tmp_path: Path) -> None:
    acc = Accelerator(cpu=True)
    saved = _parts(acc, seed=0)
    ckpt = save_checkpoint(acc, tmp_path, saved, "a: 1\n")
    assert ckpt == tmp_path / "checkpoints" / "step_0000003"
    assert {p.name for p in ckpt.iterdir()} == FILES
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_0000003"
    assert json.loads((ckpt / "train_state.json").read_text()) == {
        "step": 3,
        "accelerator_step": 0,
    }
    assert set(load_file(ckpt / "optimizer.safetensors")) == {
        f"state.{i}.{name}" for i in (0, 1) for name in ("step", "exp_avg", "exp_avg_sq")
    }
    expected_draw = torch.rand(1)

    loaded = _parts(acc, seed=1)
    loaded.train_state.step = 0
    load_checkpoint(acc, ckpt, loaded)
    assert loaded.train_state.step == 3
    assert torch.rand(1) == expected_draw, "the RNG continues where the save left it"
    for a, b in [(saved.student, loaded.student), (saved.teacher, loaded.teacher)]:
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key
    assert torch.equal(saved.loss.center, loaded.loss.center)
    before, after = saved.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert before["param_groups"] == after["param_groups"]
    for index, state in before["state"].items():
        for name, value in state.items():
            assert torch.equal(value, after["state"][index][name]), (index, name)


def test_crash_during_save_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acc = Accelerator(cpu=True)
    model, optimizer = acc.prepare(torch.nn.Linear(2, 2), torch.optim.SGD([torch.zeros(1)]))
    parts = CheckpointParts(model, model, torch.nn.Module(), optimizer, TrainState(1))
    good = save_checkpoint(acc, tmp_path, parts, "a: 1\n")
    weights = load_file(good / "model.safetensors")

    def crash(path, tensors):  # the power goes half-way through writing a file
        path.write_bytes(b"half")
        raise KeyboardInterrupt("power cut")

    with torch.no_grad():
        model.weight.add_(1)
    parts.train_state.step = 2
    monkeypatch.setattr(store, "write_tensors", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(acc, tmp_path, parts, "a: 2\n")
    assert latest_checkpoint(tmp_path) == good
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000001"]
    assert torch.equal(load_file(good / "model.safetensors")["weight"], weights["weight"])
