"""A checkpoint's backbone read back for evaluation and export: the weights the run trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dino_mx.checkpoint import (
    backbone_state,
    load_backbone_from_checkpoint,
    load_component,
    resolve_checkpoint,
)
from dino_mx.models.backbone import random_init_model
from tests.conftest import normalised_test_images

N_IMAGES = 16


@pytest.fixture
def run(tiny_run: Path) -> Path:
    return tiny_run


def _manual_cls(state: dict[str, torch.Tensor], cfg, images: torch.Tensor) -> torch.Tensor:
    """CLS features of a ViT built from scratch and given the ``backbone.model.*`` weights."""
    m = cfg.model
    vit = random_init_model(
        "vit",
        num_channels=1,
        image_size=m.image_size,
        patch_size=m.patch_size,
        hidden_size=m.hidden_size,
        depth=m.depth,
        num_heads=m.num_heads,
        mlp_ratio=m.mlp_ratio,
    )
    prefix = "backbone.model."
    vit.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    with torch.no_grad():
        out = vit(pixel_values=images, interpolate_pos_encoding=True)
    return out.last_hidden_state[:, 0]


def test_teacher_and_student_weights_are_loaded(run: Path) -> None:
    ckpt = resolve_checkpoint(run)
    teacher, cfg, step = load_backbone_from_checkpoint(run, "teacher")
    student, _, student_step = load_backbone_from_checkpoint(ckpt, "student")  # folder form
    assert step == student_step == 2 and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    images = normalised_test_images(N_IMAGES, cfg.data.mean[0], cfg.data.std[0])
    with torch.no_grad():
        f_teacher, f_student = teacher(images)[0], student(images)[0]  # (B, D) each
    assert f_teacher.shape == (N_IMAGES, 24)
    # Two optimiser steps move the student; the EMA teacher (momentum ~0.996) barely follows.
    assert (f_teacher - f_student).abs().max() > 1e-3

    ref_teacher = _manual_cls(load_component(ckpt, "teacher"), cfg, images)
    ref_student = _manual_cls(load_file(str(ckpt / "model.safetensors")), cfg, images)
    torch.testing.assert_close(f_teacher, ref_teacher, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(f_student, ref_student, rtol=1e-4, atol=1e-5)


def test_backbone_state_strips_ddp_and_compile_prefixes(tmp_path: Path) -> None:
    weight = torch.arange(6.0).reshape(2, 3)
    save_file(
        {
            "module._orig_mod.backbone.model.layer.weight": weight,
            "module.head.weight": torch.zeros(1),
        },
        tmp_path / "model.safetensors",
    )
    state = backbone_state(tmp_path, "student")
    assert list(state) == ["layer.weight"] and torch.equal(state["layer.weight"], weight)
    with pytest.raises(ValueError, match="which must be one of"):
        backbone_state(tmp_path, "ema")
    save_file({"head.weight": torch.zeros(1)}, tmp_path / "teacher.safetensors")
    with pytest.raises(KeyError, match="no 'backbone.model.\\*' weights in the teacher"):
        backbone_state(tmp_path, "teacher")
