"""Mask tokens (the model's own or the wrapper's) and the DINOv2 multi-crop wrapper."""

import pytest
import torch
from transformers import ViTConfig, ViTModel

from dino_mx.models import Backbone, DINOHead, MultiCropModel
from tests.models.test_backbone import tiny


def masks_for(batch, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(batch, n, generator=g) < 0.4
    masks[0, :3] = True  # at least a few
    return masks


def test_dinov2_uses_its_own_mask_token():
    backbone = Backbone(tiny("dinov2")).eval()
    assert backbone.has_native_mask_token
    backbone.enable_mask_token()
    assert backbone.mask_token is None  # nothing added
    native = backbone.model.embeddings.mask_token
    with torch.no_grad():
        native.normal_()
    x, masks = torch.randn(2, 1, 16, 16), masks_for(2)
    cls, patches = backbone(x, masks)
    _, plain = backbone(x)
    assert not torch.allclose(patches, plain)
    cls.pow(2).sum().backward()  # not cls.sum(): constant after the final LayerNorm
    assert native.grad is not None and native.grad.abs().sum() > 0  # it trains


def test_vit_without_a_mask_token_gets_one_from_the_wrapper_that_acts_like_hf():
    torch.manual_seed(0)
    backbone = Backbone(tiny("vit")).eval()
    assert not backbone.has_native_mask_token
    x, masks = torch.randn(3, 1, 16, 16), masks_for(3)
    with pytest.raises(ValueError, match="enable_mask_token"):
        backbone(x, masks)
    backbone.enable_mask_token()
    assert backbone.mask_token.shape == (1, 1, 24) and backbone.mask_token.requires_grad
    with torch.no_grad():
        backbone.mask_token.normal_()
    # The same weights in a ViTModel built with HF's own mask token give the same features.
    config = ViTConfig(**backbone.model.config.to_dict())
    reference = ViTModel(config, add_pooling_layer=False, use_mask_token=True).eval()
    missing, _ = reference.load_state_dict(backbone.model.state_dict(), strict=False)
    assert missing == ["embeddings.mask_token"]
    with torch.no_grad():
        reference.embeddings.mask_token.copy_(backbone.mask_token)
    cls, patches = backbone(x, masks)
    ref = Backbone(reference).eval()
    assert ref.has_native_mask_token
    ref_cls, ref_patches = ref(x, masks)
    torch.testing.assert_close(cls, ref_cls, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patches, ref_patches, atol=1e-5, rtol=1e-5)
    cls.pow(2).sum().backward()
    assert backbone.mask_token.grad.abs().sum() > 0
    # The hook is gone after the call: an unmasked call sees no mask token.
    plain_cls, _ = backbone(x)
    assert not torch.allclose(plain_cls, cls)


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_an_empty_mask_changes_nothing(arch):
    backbone = Backbone(tiny(arch)).eval()
    backbone.enable_mask_token()
    x = torch.randn(2, 1, 16, 16)
    none = torch.zeros(2, 16, dtype=torch.bool)
    torch.testing.assert_close(backbone(x, none)[1], backbone(x)[1])


@pytest.mark.parametrize("shared", [True, False])
def test_masked_multicrop_student_and_teacher_outputs(shared):
    torch.manual_seed(0)
    backbone = Backbone(tiny("vit"))
    backbone.enable_mask_token()
    with torch.no_grad():
        backbone.mask_token.normal_()
    ibot_head = None if shared else DINOHead(24, 7, 16, 8, 2)
    model = MultiCropModel(backbone, DINOHead(24, 10, 16, 8, 2), ibot_head).eval()
    B = 3
    crops = [torch.randn(B, 1, 16, 16), torch.randn(B, 1, 16, 16), torch.randn(B, 1, 8, 8)]
    masks = masks_for(2 * B)
    student = model(crops, masks)
    teacher = model(crops, masks, mask_inputs=False)
    k_patch = 10 if shared else 7
    assert [c.shape for c in student.cls_logits] == [(B, 10)] * 3
    assert student.cls_features.shape == (3 * B, 24)  # crop by crop
    assert student.patch_logits.shape == teacher.patch_logits.shape == (masks.sum(), k_patch)
    # The teacher sees the whole crops: its outputs are the plain backbone's.
    cls, patches = backbone(torch.cat(crops[:2]))
    patch_head = model.head if shared else ibot_head
    torch.testing.assert_close(teacher.patch_logits, patch_head(patches[masks]))
    torch.testing.assert_close(torch.cat(teacher.cls_logits[:2]), model.head(cls))
    # The student's global crops went through the mask token; its local crop did not.
    s_cls, s_patches = backbone(torch.cat(crops[:2]), masks)
    torch.testing.assert_close(student.patch_logits, patch_head(s_patches[masks]))
    s_crops, t_crops = student.cls_features.split(B), teacher.cls_features.split(B)
    torch.testing.assert_close(s_crops[2], t_crops[2])
    assert not torch.allclose(s_crops[0], t_crops[0])
