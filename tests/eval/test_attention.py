"""CLS attention maps against a hand-computed last layer, DINO's mass threshold, upsampling."""

from __future__ import annotations

import math

import pytest
import torch

from dino_mx.eval.attention import cls_attention, eager_attention, top_mass_mask, upsample
from dino_mx.models.backbone import Backbone, random_init_model


def tiny_backbone(arch: str = "vit") -> Backbone:
    torch.manual_seed(0)
    model = random_init_model(
        arch, num_channels=3, image_size=16, patch_size=4, hidden_size=24, depth=2, num_heads=3
    )
    return Backbone(model).eval()


def reference_cls_attention(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """softmax(q_cls . K^T / sqrt(d)) of the last ViT layer, from its weights: (B, heads, N)."""
    model = backbone.model
    hidden = model(images, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states
    # transformers >= 5 names them layers / q_proj / k_proj; 4.x encoder.layer / query / key.
    layers = model.layers if hasattr(model, "layers") else model.encoder.layer
    layer = layers[-1]
    x = layer.layernorm_before(hidden[-2])  # (B, T, D) input of the last block
    heads, d = model.config.num_attention_heads, model.config.hidden_size
    attn = layer.attention
    query = attn.q_proj if hasattr(attn, "q_proj") else attn.attention.query
    key = attn.k_proj if hasattr(attn, "k_proj") else attn.attention.key
    q = query(x).unflatten(-1, (heads, d // heads)).transpose(1, 2)  # (B, heads, T, d_h)
    k = key(x).unflatten(-1, (heads, d // heads)).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    cls = weights[:, :, 0, 1:]  # CLS query over patch keys
    return cls / cls.sum(-1, keepdim=True)


@torch.no_grad()
def test_maps_have_the_patch_grid_shape_sum_to_one_and_match_the_formula():
    backbone = tiny_backbone()
    images = torch.randn(2, 3, 16, 24)  # 4 x 6 patches
    maps = cls_attention(backbone, images)
    assert maps.shape == (2, 3, 4, 6)
    torch.testing.assert_close(maps.sum((-2, -1)), torch.ones(2, 3))
    expected = reference_cls_attention(backbone, images).reshape(2, 3, 4, 6)
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-4)
    # The head mean is a distribution too.
    torch.testing.assert_close(maps.mean(1).sum((-2, -1)), torch.ones(2))


@torch.no_grad()
def test_dinov2_maps_and_training_keeps_sdpa():
    backbone = tiny_backbone("dinov2")
    assert backbone.model.config._attn_implementation == "sdpa"
    maps = cls_attention(backbone, torch.randn(1, 3, 16, 16))
    assert maps.shape == (1, 3, 4, 4)
    torch.testing.assert_close(maps.sum((-2, -1)), torch.ones(1, 3))
    assert backbone.model.config._attn_implementation == "sdpa"  # restored for training


def test_eager_attention_is_restored_after_an_error():
    backbone = tiny_backbone()
    with pytest.raises(RuntimeError, match="boom"), eager_attention(backbone.model):
        assert backbone.model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert backbone.model.config._attn_implementation == "sdpa"


def test_top_mass_mask_keeps_the_smallest_set_holding_the_mass():
    maps = torch.tensor([[0.1, 0.4], [0.3, 0.2]])
    # Ascending: 0.1, 0.2, 0.3, 0.4; cumulative 0.1, 0.3, 0.6, 1.0 > 1 - keep.
    assert top_mass_mask(maps, 0.6).tolist() == [[False, True], [True, False]]
    assert top_mass_mask(maps, 0.75).tolist() == [[False, True], [True, True]]
    assert top_mass_mask(maps, 1.0).all()
    assert top_mass_mask(maps, 0.3).tolist() == [[False, True], [False, False]]
    batched = top_mass_mask(torch.stack([maps, maps.flip(-1)])[:, None] * 5, 0.6)  # unnormalised
    assert batched.shape == (2, 1, 2, 2) and batched[1, 0].tolist() == [
        [True, False],
        [False, True],
    ]
    with pytest.raises(ValueError, match="keep"):
        top_mass_mask(maps, 0.0)


def test_upsample_spreads_each_patch_over_its_pixels():
    maps = torch.tensor([[[[0.5, 0.25], [0.25, 0.0]]]])
    up = upsample(maps, (4, 4))
    assert up.shape == (1, 1, 4, 4)
    torch.testing.assert_close(up.sum(), torch.tensor(1.0))
    torch.testing.assert_close(up[0, 0, :2, :2], torch.full((2, 2), 0.125))
    torch.testing.assert_close(up[0, 0, 2:, 2:], torch.zeros(2, 2))
