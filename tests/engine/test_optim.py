"""Parameter groups: DINO's weight-decay split, DINOv2's layer-wise lr decay."""

import pytest
import torch

from dino_mx.engine.optim import lr_scales, param_groups
from dino_mx.models import (
    Backbone,
    DINOHead,
    MultiCropModel,
    random_init_model,
)
from dino_mx.models.blocks import block_prefix


def student(arch="vit", depth=3, masked=False):
    backbone = Backbone(
        random_init_model(
            arch,
            num_channels=1,
            image_size=16,
            patch_size=4,
            hidden_size=24,
            depth=depth,
            num_heads=2,
        )
    )
    if masked:
        backbone.enable_mask_token()
        return MultiCropModel(backbone, DINOHead(24, 10, 16, 8, 2), DINOHead(24, 6, 16, 8, 2))
    return MultiCropModel(backbone, DINOHead(24, 10, 16, 8, 2))


def test_defaults_are_dinos_two_groups():
    model = student()
    groups = param_groups(model)
    assert [(g["apply_wd"], g["lr_scale"]) for g in groups] == [(True, 1.0), (False, 1.0)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    for p in groups[1]["params"]:
        assert p.ndim == 1  # biases and norms: no weight decay
    order = [id(p) for p in trainable]
    for g in groups:  # the model's order is kept within a group
        ids = [id(p) for p in g["params"]]
        assert ids == sorted(ids, key=order.index)


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_layerwise_decay_scales_blocks_embeddings_and_patch_embedding(arch):
    depth, decay, mult = 3, 0.5, 0.2
    model = student(arch, depth, masked=True)
    scales = lr_scales(model, decay, mult)
    prefix = block_prefix(model.backbone.model)
    for name, scale in scales.items():
        sub = name.removeprefix("backbone.model.")
        if sub.startswith(f"{prefix}."):
            i = int(sub[len(prefix) + 1 :].split(".")[0])
            assert scale == pytest.approx(decay ** (depth - i)), name
        elif sub.startswith("embeddings.patch_embeddings."):
            assert scale == pytest.approx(decay ** (depth + 1) * mult), name
        elif sub.startswith("embeddings.") or name == "backbone.mask_token":
            assert scale == pytest.approx(decay ** (depth + 1)), name
        else:  # final norm and both heads
            assert name.startswith(("head.", "ibot_head.", "backbone.model.layernorm")), name
            assert scale == 1.0
    assert "backbone.mask_token" in scales or arch == "dinov2"
    last_block = [s for n, s in scales.items() if f"{prefix}.{depth - 1}." in n]
    assert last_block and all(s == pytest.approx(decay) for s in last_block)


def test_groups_apply_their_scale_in_an_optimiser_step():
    model = student(depth=2)
    groups = param_groups(model, layerwise_decay=0.5, patch_embed_lr_mult=0.0)
    assert {g["lr_scale"] for g in groups} == {1.0, 0.5, 0.25, 0.125, 0.0}  # 0: patch embed
    optimizer = torch.optim.SGD(groups, lr=0.0)
    for g in optimizer.param_groups:
        g["lr"] = 1.0 * g["lr_scale"]
    patch = model.backbone.model.embeddings.patch_embeddings.projection.weight
    before = patch.detach().clone()
    model([torch.randn(2, 1, 16, 16)]).cls_logits[0].sum().backward()
    optimizer.step()
    assert torch.equal(patch, before)  # multiplier 0: frozen in effect


def test_frozen_parameters_are_left_out_and_bad_values_raise():
    model = student()
    model.backbone.model.embeddings.cls_token.requires_grad_(False)
    names = lr_scales(model, 0.9)
    assert "backbone.model.embeddings.cls_token" not in names
    with pytest.raises(ValueError, match="layerwise_decay"):
        lr_scales(model, 1.5)
    with pytest.raises(ValueError, match="patch_embed_lr_mult"):
        lr_scales(model, 0.9, -1.0)
