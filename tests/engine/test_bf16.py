"""``trainer.precision=bf16`` on a CPU: Accelerate's CPU autocast runs the matmuls in bf16,
while everything that accumulates over steps — master weights, Adam moments, the EMA teacher,
the DINO centre — and every checkpoint stays fp32."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from safetensors.torch import load_file

from dino_mx.engine.run import build_trainer, make_accelerator
from dino_mx.engine.trainer import Trainer
from tests.conftest import make_config

TINY = ("trainer.max_steps=2", "trainer.batch_size=4", "model.depth=1", "trainer.progress=false")
CHECKPOINT_FILES = ("model", "teacher", "loss", "optimizer")


def linear_output_dtypes(module: torch.nn.Module, seen: set[torch.dtype]) -> list:
    """Record the dtype every ``nn.Linear`` of ``module`` returns; the hook handles."""
    hook = lambda _m, _i, out: seen.add(out.dtype)  # noqa: E731
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return [m.register_forward_hook(hook) for m in linears]


def reset_accelerate() -> None:
    """Forget the process-wide precision, as Accelerate's own test case does between tests: it
    refuses a second ``Accelerator`` with another ``mixed_precision`` in the same process."""
    AcceleratorState._reset_state()
    GradientState._reset_state()


def run(tmp: Path, precision: str) -> tuple[Trainer, Path, set[torch.dtype]]:
    """Two steps of the smoke config at ``precision``; the trainer, its run dir, the dtypes the
    student's and teacher's linear layers produced."""
    reset_accelerate()
    run_dir = tmp / precision
    cfg = make_config(
        "+experiment=smoke", f"paths.output_dir={run_dir}", *TINY, f"trainer.precision={precision}"
    )
    set_seed(cfg.trainer.seed)
    run_dir.mkdir(parents=True)
    trainer = build_trainer(cfg, run_dir, make_accelerator(cfg, run_dir))
    seen: set[torch.dtype] = set()
    handles = linear_output_dtypes(trainer.student, seen) + linear_output_dtypes(
        trainer.teacher, seen
    )
    trainer.fit()
    for h in handles:
        h.remove()
    return trainer, run_dir, seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """An fp32 and then a bf16 run (last, so its Accelerator stays valid for the tests)."""
    tmp = tmp_path_factory.mktemp("precision")
    yield {p: run(tmp, p) for p in ("fp32", "bf16")}
    reset_accelerate()  # later tests start from a clean Accelerate state


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_bf16_on_cpu_autocasts_the_forward_and_gives_a_finite_loss_near_fp32(runs):
    trainer, run_dir, seen = runs["bf16"]
    assert trainer.acc.mixed_precision == "bf16" and trainer.acc.device.type == "cpu"
    assert seen == {torch.bfloat16}  # CPU autocast is on: every linear layer ran in bf16
    assert runs["fp32"][2] == {torch.float32}
    bf16, fp32 = losses(run_dir), losses(runs["fp32"][1])
    assert len(bf16) == 2 and all(math.isfinite(v) for v in bf16)
    # Same seed, data and init: the first loss differs from fp32 only by bf16 rounding
    # (8 mantissa bits, ~0.4 % per op), and does differ, or autocast did nothing.
    assert bf16[0] == pytest.approx(fp32[0], rel=2e-2) and bf16[0] != fp32[0]


def test_bf16_keeps_master_weights_teacher_and_centre_in_fp32(runs):
    trainer = runs["bf16"][0]
    for name, p in trainer.student.named_parameters():
        assert p.dtype == torch.float32, name
    for name, p in trainer.teacher.named_parameters():
        assert p.dtype == torch.float32, name
    for state in trainer.optimizer.state.values():
        for key, value in state.items():
            assert value.dtype == torch.float32, (key, value.dtype)
    centres = dict(trainer.objective.named_buffers())
    assert any(n.endswith("center") for n in centres)
    for name, buffer in centres.items():
        assert buffer.dtype == torch.float32, name
    # The centre moved off zero in fp32: the EMA of bf16 teacher outputs was accumulated there.
    assert all(b.abs().sum() > 0 for n, b in centres.items() if n.endswith("center"))


def test_bf16_checkpoints_hold_fp32_tensors_only(runs):
    run_dir = runs["bf16"][1]
    ckpt = run_dir / "checkpoints" / "step_0000002"
    for part in CHECKPOINT_FILES:
        tensors = load_file(ckpt / f"{part}.safetensors")
        assert tensors, part
        floats = {k: v.dtype for k, v in tensors.items() if v.is_floating_point()}
        assert floats and set(floats.values()) == {torch.float32}, (part, floats)
