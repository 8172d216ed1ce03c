"""Feature extraction and the feature cache, on a real (tiny) training run."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.utils.data import Subset

from dino_mx.checkpoint import (
    checkpoint_fingerprint,
    load_backbone_from_checkpoint,
    load_component,
    resolve_checkpoint,
)
from dino_mx.eval.features import (
    PixelBackbone,
    cached_features,
    channel_stats,
    eval_dataset,
    extract_features,
    feature_key,
)
from tests.conftest import normalised_test_images

N_IMAGES = 32


@pytest.fixture
def run(tiny_run: Path) -> Path:
    return tiny_run


def test_cls_mean_is_cls_then_mean_patch_token(run: Path) -> None:
    backbone, cfg, _ = load_backbone_from_checkpoint(run)
    dataset = Subset(eval_dataset(cfg.data, "test", cfg.augment.global_size), range(N_IMAGES))
    both, _ = extract_features(backbone, dataset, tokens="cls+mean", device="cpu")
    assert both.shape == (N_IMAGES, 2 * 24)
    with torch.no_grad():
        cls, patches = backbone(
            normalised_test_images(N_IMAGES, cfg.data.mean[0], cfg.data.std[0])
        )  # (B, 49, D)
    assert patches.shape[1] == (28 // 4) ** 2
    torch.testing.assert_close(both[:, :24], cls, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both[:, 24:], patches.mean(1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="tokens"):
        extract_features(backbone, dataset, tokens="mean")


def test_cache_is_reused_then_invalidated_by_a_new_checkpoint(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = shutil.copytree(run, tmp_path / "run")
    ckpt = resolve_checkpoint(copy)
    backbone, cfg, _ = load_backbone_from_checkpoint(copy)
    calls = []
    backbone.register_forward_hook(lambda *_: calls.append(1))
    dataset = Subset(eval_dataset(cfg.data, "test", cfg.augment.global_size), range(N_IMAGES))
    cache = copy / "eval" / "features"

    def features(module: torch.nn.Module) -> torch.Tensor:
        key = feature_key(checkpoint_fingerprint(ckpt, "teacher"), "cls", cfg.data, 28, "test")
        return cached_features(
            module, dataset, key, cache, split="test", batch_size=16, device="cpu"
        )[0]

    first = features(backbone)
    assert len(calls) == 2 and len(list(cache.glob("test-*.pt"))) == 1
    with caplog.at_level(logging.INFO, logger="dino_mx.eval.features"):
        second = features(backbone)
    assert len(calls) == 2, "a cache hit must not run the backbone"
    assert "features: cache hit" in caplog.text
    torch.testing.assert_close(first, second)

    # Training on rewrites the teacher file: new contents, new mtime, new key.
    teacher_file = ckpt / "teacher.safetensors"
    old = teacher_file.stat().st_mtime_ns
    state = load_component(ckpt, "teacher")
    state = {k: v * 1.5 if k.endswith("layernorm.weight") else v for k, v in state.items()}
    save_file(state, teacher_file)
    os.utime(teacher_file, ns=(old + 10**9, old + 10**9))  # whatever the clock granularity
    changed, _, _ = load_backbone_from_checkpoint(copy)
    changed.register_forward_hook(lambda *_: calls.append(1))
    third = features(changed)
    assert len(calls) == 4 and len(list(cache.glob("test-*.pt"))) == 2
    assert not torch.allclose(first, third)


def test_pixels_are_flat() -> None:
    images = torch.rand(3, 1, 28, 28)
    cls, patches = PixelBackbone()(images)
    torch.testing.assert_close(cls, images.reshape(3, -1))
    assert patches.shape == (3, 1, 784)


def test_channel_stats() -> None:
    assert channel_stats([0.5], [0.2], 3) == ([0.5] * 3, [0.2] * 3)
    mean, std = channel_stats([0.2, 0.4, 0.6], [0.1, 0.1, 0.1], 1)
    assert mean == pytest.approx([0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6])
    assert std == pytest.approx([0.1])
    with pytest.raises(ValueError, match="2 values"):
        channel_stats([0.1, 0.2], [0.1, 0.1], 3)
