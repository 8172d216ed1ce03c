import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModel

from dino_mx.models import (
    Backbone,
    DINOHead,
    MultiCropModel,
    adapt_input_channels,
    build_backbone,
    build_seeded_backbone,
    load_pretrained_model,
    random_init_model,
)

# build_backbone's model config for tiny(): random init when pretrained is null.
TINY = dict(
    pretrained=None,
    arch="vit",
    image_size=16,
    patch_size=4,
    hidden_size=24,
    depth=1,
    num_heads=2,
    mlp_ratio=4.0,
    drop_path_rate=0.0,
)


def tiny(arch="vit", channels=1):
    return random_init_model(
        arch,
        num_channels=channels,
        image_size=16,
        patch_size=4,
        hidden_size=24,
        depth=1,
        num_heads=2,
    )


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_local_crops_smaller_than_global_interpolate_positions(arch):
    backbone = Backbone(tiny(arch)).eval()
    for size in (16, 8, 12):
        cls, patches = backbone(torch.randn(2, 1, size, size))
        assert cls.shape == (2, 24)
        assert patches.shape == (2, (size // 4) ** 2, 24)


def test_multicrop_model_groups_by_resolution_like_separate_calls():
    torch.manual_seed(0)
    model = MultiCropModel(Backbone(tiny()), DINOHead(24, 10, 16, 8, 2)).eval()
    crops = [torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16), torch.randn(3, 1, 8, 8)]
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    outs = model(crops).cls_logits
    assert calls == [6, 3]  # one backbone call per resolution
    for crop, out in zip(crops, outs):
        cls, _ = model.backbone(crop)
        torch.testing.assert_close(out, model.head(cls), atol=1e-5, rtol=1e-5)


def test_head_normalises_bottleneck_and_freezes_gain():
    head = DINOHead(24, 10, hidden_dim=16, bottleneck_dim=8, nlayers=3, norm_last_layer=True)
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad
    # Prototypes have unit norm, so |logit| <= 1 for the L2-normalised bottleneck.
    assert head(torch.randn(5, 24) * 100).abs().max() <= 1 + 1e-5
    free = DINOHead(24, 10, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def test_rgb_model_on_grey_data_equals_grey_repeated_in_rgb():
    torch.manual_seed(0)
    rgb = tiny(channels=3).eval()
    x = torch.randn(2, 1, 16, 16)
    expected = rgb(pixel_values=x.repeat(1, 3, 1, 1)).last_hidden_state
    adapt_input_channels(rgb, 1)
    assert rgb.config.num_channels == 1
    torch.testing.assert_close(
        rgb(pixel_values=x).last_hidden_state, expected, atol=1e-5, rtol=1e-4
    )


def test_local_folder_loads_and_adapts_channels(tmp_path):
    tiny(channels=3).save_pretrained(tmp_path)
    model = load_pretrained_model(str(tmp_path), num_channels=1)
    assert model.embeddings.patch_embeddings.projection.weight.shape[1] == 1


def test_one_channel_rule_is_the_sum_of_the_rgb_filters():
    torch.manual_seed(0)
    model = tiny(channels=3)
    weight = model.embeddings.patch_embeddings.projection.weight.clone()  # (24, 3, 4, 4)
    adapt_input_channels(model, 1)
    torch.testing.assert_close(
        model.embeddings.patch_embeddings.projection.weight, weight.sum(1, keepdim=True)
    )


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_pretrained_rgb_on_four_channels_keeps_the_embedding_of_constant_images(arch, tmp_path):
    torch.manual_seed(0)
    rgb = tiny(arch, channels=3).eval()
    rgb.save_pretrained(tmp_path)
    cfg = OmegaConf.create({"pretrained": str(tmp_path)})
    four = build_backbone(cfg, num_channels=4)
    assert four.num_channels == four.model.config.num_channels == 4
    conv = four.model.embeddings.patch_embeddings.projection
    old = rgb.embeddings.patch_embeddings.projection
    assert conv.weight.shape == (24, 4, 4, 4)
    # Rule: the mean RGB filter repeated four times, scaled by 3 / 4; bias unchanged.
    expected = old.weight.mean(1, keepdim=True).repeat(1, 4, 1, 1) * 3 / 4
    torch.testing.assert_close(conv.weight, expected)
    torch.testing.assert_close(conv.bias, old.bias)
    # A constant image (one random value per pixel, equal in all channels) is embedded as the
    # RGB model embeds the constant RGB image, patch by patch and through the whole network.
    plane = torch.randn(2, 1, 16, 16)
    patches_rgb = old(plane.expand(2, 3, 16, 16))
    torch.testing.assert_close(conv(plane.expand(2, 4, 16, 16)), patches_rgb, atol=1e-6, rtol=0)
    cls_rgb, tokens_rgb = Backbone(rgb).eval()(plane.expand(2, 3, 16, 16))
    cls_four, tokens_four = four.eval()(plane.expand(2, 4, 16, 16))
    torch.testing.assert_close(cls_four, cls_rgb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokens_four, tokens_rgb, atol=1e-5, rtol=1e-5)


def test_adapted_model_saves_and_reloads_with_its_channels(tmp_path):
    model = tiny(channels=3)
    adapt_input_channels(model, 5)
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert reloaded.config.num_channels == 5
    assert reloaded.embeddings.patch_embeddings.projection.weight.shape[1] == 5
    reloaded(pixel_values=torch.randn(1, 5, 16, 16))  # HF checks the channel count


def test_random_init_takes_any_channel_count_and_other_counts_do_not_adapt():
    backbone = build_backbone(OmegaConf.create(TINY), num_channels=6)
    assert backbone.model.embeddings.patch_embeddings.projection.weight.shape[1] == 6
    cls, _ = backbone(torch.randn(2, 6, 16, 16))
    assert cls.shape == (2, 24)
    with pytest.raises(ValueError, match="cannot adapt a 6-channel patch embedding to 3"):
        adapt_input_channels(backbone.model, 3)


def test_seeded_backbone_is_the_same_every_call_and_leaves_the_global_rng_alone():
    cfg = OmegaConf.create(TINY)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_seeded_backbone(cfg, 1), build_seeded_backbone(cfg, 1)
    assert torch.rand(1) == expected, "the global RNG must be left as it was"
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    other = build_seeded_backbone(cfg, 1, seed=1)
    assert not torch.equal(a.model.embeddings.cls_token, other.model.embeddings.cls_token)
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="pass model.pretrained=DIR"):
        load_pretrained_model("facebook/dinov2-small-not-cached")
