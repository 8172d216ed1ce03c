"""Training with adapters on the tiny smoke setting: what moves, what is saved, what resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from dino_mx.checkpoint import latest_checkpoint, load_backbone_from_checkpoint, load_component
from dino_mx.checkpoint.format import BASE_DIR
from dino_mx.checkpoint.frozen_base import read_base_reference
from dino_mx.engine.run import build_trainer, make_accelerator
from dino_mx.engine.trainer import Trainer
from dino_mx.eval.cli import evaluate_knn
from dino_mx.eval.network import NetworkSpec
from dino_mx.train import train
from tests.conftest import make_config

LORA = ["adapter=lora", "adapter.r=4", "adapter.alpha=8", "optim.lr=5e-3"]


def run_trainer(cfg, run: Path) -> Trainer:
    """:func:`train`, keeping the trainer to look at the networks it trained."""
    set_seed(cfg.trainer.seed)
    run.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
    trainer.fit()
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, dict, Path]:
    """Three LoRA steps; returns the trainer, the student's weights before them, the run."""
    run = tmp_path_factory.mktemp("lora") / "run"
    cfg = make_config(
        "+experiment=smoke",
        f"paths.output_dir={run}",
        "trainer.max_steps=3",
        "trainer.progress=false",
        *LORA,
    )
    set_seed(cfg.trainer.seed)
    run.mkdir(parents=True)
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
    before = snapshot(trainer.student)
    trainer.fit()
    return trainer, before, run


def test_lora_moves_only_adapters_and_head_and_keeps_the_base_bit_identical(lora_run):
    trainer, before, run = lora_run
    for name, p in trainer.student.named_parameters():
        if p.requires_grad:
            assert "lora_" in name or name.startswith("head."), name
        else:  # frozen base: bit for bit, through three optimiser steps
            assert torch.equal(p, before[name]), name
    lora_b = [n for n in before if "lora_B" in n]
    assert lora_b and all(
        not torch.equal(before[n], trainer.student.get_parameter(n)) for n in lora_b
    )
    # The teacher reads the student's frozen tensors and averages its own adapters.
    teacher = dict(trainer.teacher.named_parameters())
    for name, p in trainer.student.named_parameters():
        assert (teacher[name].data_ptr() == p.data_ptr()) == (not p.requires_grad), name
    assert all(not torch.equal(teacher[n], before[n]) for n in lora_b)
    assert "blocks 0-1" in (run / "parameters.txt").read_text()


def test_lora_checkpoint_holds_adapters_and_head_and_refers_to_the_base(lora_run, tmp_path):
    trainer, _, run = lora_run
    ckpt = latest_checkpoint(run)
    saved = load_file(ckpt / "model.safetensors")
    # Everything but the frozen backbone: adapters and the head (its fixed gain included).
    assert set(saved) == {
        n for n, p in trainer.student.named_parameters() if p.requires_grad or n.startswith("head.")
    }
    assert set(load_component(ckpt, "teacher")) == set(saved)
    ref = read_base_reference(ckpt)
    assert ref.path == (run / BASE_DIR).resolve()
    assert "embeddings.cls_token" in ref.frozen

    full = tmp_path / "full"
    train(
        make_config(
            "+experiment=smoke",
            f"paths.output_dir={full}",
            "trainer.max_steps=1",
            "trainer.progress=false",
        ),
        full,
    )

    def size(ckpt_dir: Path) -> int:
        files = [f for f in ckpt_dir.glob("*") if not f.name.startswith("optimizer.")]
        return sum(f.stat().st_size for f in files)

    # The smoke head (11k parameters) is most of what is left: the backbone (60k) is not saved.
    assert size(ckpt) < 0.45 * size(latest_checkpoint(full))


def test_lora_checkpoint_evaluates_as_the_trained_teacher(lora_run):
    trainer, _, run = lora_run
    backbone, _, step = load_backbone_from_checkpoint(run)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        expected = trainer.teacher.backbone(x)[0]  # adapters not merged
        torch.testing.assert_close(backbone(x)[0], expected, rtol=1e-4, atol=1e-5)
    assert step == 3
    knn = evaluate_knn(NetworkSpec(run), ks=(5,), split="val", device="cpu")
    assert 0.25 < knn["metrics"]["5"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_resuming_a_lora_run_restores_the_adapters_exactly(tmp_path):
    def cfg(run: Path, *extra: str):
        return make_config(
            "+experiment=smoke",
            f"paths.output_dir={run}",
            "trainer.max_steps=4",
            "trainer.save_every=2",
            "trainer.keep_last=0",
            "trainer.progress=false",
            *LORA,
            *extra,
        )

    straight = tmp_path / "straight"
    train(cfg(straight), straight)  # LoRA dropout 0.05: the RNG must be restored too
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints/step_0000002", resumed / "checkpoints/step_0000002")
    shutil.copytree(straight / BASE_DIR, resumed / BASE_DIR)

    resume = cfg(resumed, "trainer.resume=true")
    set_seed(resume.trainer.seed)
    trainer = build_trainer(resume, resumed, make_accelerator(resume, resumed))
    trainer.resume()  # what fit() starts with
    saved = load_file(resumed / "checkpoints/step_0000002/model.safetensors")
    saved_teacher = load_component(resumed / "checkpoints/step_0000002", "teacher")
    teacher = dict(trainer.teacher.named_parameters())
    for name, p in trainer.student.named_parameters():
        if "lora_" in name:
            assert torch.equal(p, saved[name]) and torch.equal(teacher[name], saved_teacher[name])
    trainer.fit()
    for name in ("model.safetensors", "teacher.safetensors"):
        a, b = (r / "checkpoints/step_0000004" / name for r in (straight, resumed))
        sa, sb = load_file(str(a)), load_file(str(b))
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_freeze_keeps_the_first_blocks_and_trains_the_rest(tmp_path):
    run = tmp_path / "run"
    cfg = make_config(
        "+experiment=smoke",
        f"paths.output_dir={run}",
        "trainer.max_steps=2",
        "trainer.progress=false",
        "adapter=freeze",
        "adapter.num_layers=1",
    )
    set_seed(cfg.trainer.seed)
    run.mkdir()
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
    before = snapshot(trainer.student)
    trainer.fit()
    after = snapshot(trainer.student)
    for name in before:
        if name.endswith("original0"):  # the head's fixed weight-norm gain
            continue
        frozen = name.startswith(("backbone.model.embeddings.", "backbone.model.layers.0."))
        assert torch.equal(before[name], after[name]) == frozen, name
    saved = load_file(latest_checkpoint(run) / "model.safetensors")
    assert not any(k.startswith("backbone.model.layers.0.") for k in saved)
    assert "backbone.model.layers.1.mlp.fc1.weight" in saved


def test_freezing_more_blocks_than_the_model_has_fails_naming_the_depth(tmp_path):
    cfg = make_config(
        "+experiment=smoke",
        f"paths.output_dir={tmp_path}",
        "adapter=freeze",
        "adapter.num_layers=3",
    )
    with pytest.raises(ValueError, match="has 2 blocks"):
        train(cfg, tmp_path)


@pytest.mark.parametrize("experiment", ["pneumonia_lora", "pneumonia_freeze"])
@pytest.mark.slow
def test_cpu_adapter_experiments_train(experiment, tmp_path):
    # As configured but for two steps at a smaller batch, to keep the suite fast.
    cfg = make_config(
        f"+experiment={experiment}",
        f"paths.output_dir={tmp_path}",
        "trainer.max_steps=2",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "data.num_workers=0",
    )
    assert train(cfg, tmp_path)["step"] == 1
    assert (tmp_path / BASE_DIR / "model.safetensors").is_file()
