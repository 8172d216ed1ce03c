"""FSDP2 with two real CPU processes (gloo, torchrun), against the one-process run.

The same global batch (2 x 4 images vs 1 x 8) and seed: the sharded run's losses and weights
equal the unsharded run's to fp32 rounding; the EMA teacher follows its formula shard by shard;
save -> resume continues bit for bit; LoRA's frozen base stays bit-identical; the checkpoint
is the single-process format, so export and ``AutoModel.from_pretrained`` read it as any other.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModel

from dino_mx.checkpoint import load_backbone_from_checkpoint, load_component
from dino_mx.export import export_checkpoint
from dino_mx.train import train
from tests.conftest import make_config
from tests.engine.test_distributed import torchrun

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# freeze_last_layer_ratio 0.5: the heads' last layers get no update in steps 0-1 (sharded grads
# dropped by name); clipping (optim.clip_grad=3) acts on sharded grads every step.
SMOKE = [
    "+experiment=smoke",
    "trainer.progress=false",
    "data.num_workers=0",
    "optim.freeze_last_layer_ratio=0.5",
]
FILES = ("model", "teacher", "loss", "optimizer")


def fsdp_run(run: Path, *overrides: str) -> Path:
    """4 steps of the smoke config on 2 processes, 4 images each, sharded."""
    args = [*SMOKE, f"paths.output_dir={run}", "trainer.fsdp=true", "trainer.batch_size=4"]
    args += ["trainer.save_every=1", "trainer.keep_last=0"]
    torchrun(str(ROOT / "dino_mx" / "train.py"), *args, *overrides, cwd=ROOT)
    return run


def state(ckpt: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(ckpt / f"{name}.safetensors") for name in FILES}


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fsdp")
    single = root / "single"
    train(make_config(*SMOKE, f"paths.output_dir={single}"), single)  # 1 process x 8 images
    return {"single": single, "fsdp": fsdp_run(root / "fsdp")}


def test_two_sharded_processes_equal_one_process_within_fp32(runs):
    last_layer = "head.last_layer.parametrizations.weight.original1"
    ckpts = runs["fsdp"] / "checkpoints"
    frozen = [
        load_file(ckpts / f"step_000000{i}" / "model.safetensors")[last_layer] for i in (1, 2)
    ]
    assert torch.equal(*frozen)  # freeze_last_layer: no update in the first half
    assert losses(runs["fsdp"]) == pytest.approx(losses(runs["single"]), rel=1e-5, abs=1e-6)
    one, two = (state(runs[k] / "checkpoints" / "step_0000004") for k in ("single", "fsdp"))
    for name in FILES:  # the same files, names and shapes: the single-process format
        assert one[name].keys() == two[name].keys(), name
        for key, value in one[name].items():
            torch.testing.assert_close(two[name][key], value, atol=2e-6, rtol=1e-5)


def test_the_sharded_teacher_follows_the_ema_formula(runs):
    # The update of step 2: teacher_3 = m * teacher_2 + (1 - m) * student_3, m logged at step 2
    # (the last step's momentum is 1: the schedule ends with a frozen teacher).
    ckpts = runs["fsdp"] / "checkpoints"
    teacher_2 = load_component(ckpts / "step_0000002", "teacher")
    teacher_3 = load_component(ckpts / "step_0000003", "teacher")
    student_3 = load_file(ckpts / "step_0000003" / "model.safetensors")
    log = {e["step"]: e for e in map(json.loads, (runs["fsdp"] / "train_log.jsonl").open())}
    m = log[2]["momentum"]
    assert 0.99 < m < 1 and teacher_3.keys() == student_3.keys()
    moved = 0
    for key, value in teacher_3.items():
        expected = m * teacher_2[key] + (1 - m) * student_3[key]
        torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)
        moved += not torch.equal(value, teacher_2[key])
    assert moved > len(teacher_3) // 2  # the trainable weights moved, shard by shard


def test_an_fsdp_checkpoint_resumes_bit_for_bit(runs, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(
        runs["fsdp"] / "checkpoints" / "step_0000002", resumed / "checkpoints" / "step_0000002"
    )
    fsdp_run(resumed, "trainer.resume=true")
    a, b = (state(r / "checkpoints" / "step_0000004") for r in (runs["fsdp"], resumed))
    for name in FILES:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_lora_on_a_dinov2_backbone_under_fsdp_keeps_the_base_and_exports(tmp_path):
    # DINOv2's blocks (Dinov2Layer, under encoder.layer) are the units as ViT's are.
    run = fsdp_run(tmp_path / "lora", "adapter=lora", "model.arch=dinov2", "trainer.eval_every=4")
    events = EventAccumulator(str(next((run / "tb").rglob("events.out.tfevents.*")))).Reload()
    assert "knn/val_accuracy_k20" in events.Tags()["scalars"]  # gathered teacher, main scores
    backbone, _, step = load_backbone_from_checkpoint(run)  # as `dino-mx eval` reads it
    assert step == 4 and backbone.embed_dim == 48
    out = export_checkpoint(run, tmp_path / "export")
    model, base = AutoModel.from_pretrained(out), AutoModel.from_pretrained(run / "base")
    assert type(model).__name__ == "Dinov2Model"
    # LoRA merged into the attention projections; every other backbone weight is the base's.
    merged = {k for k in model.state_dict() if any(p in k for p in ("q_proj", "v_proj"))}
    for key, value in base.state_dict().items():
        if key not in merged and not key.startswith("pooler."):  # ViT: a fresh random pooler
            assert torch.equal(model.state_dict()[key], value), key
    assert any(not torch.equal(model.state_dict()[k], base.state_dict()[k]) for k in merged)
