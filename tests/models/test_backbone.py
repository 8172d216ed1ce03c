import pytest
import torch

from dino_mx.models import (
    Backbone,
    DINOHead,
    MultiCropModel,
    adapt_input_channels,
    load_pretrained_model,
    random_init_model,
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
    outs = model(crops)
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


def test_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="pass model.pretrained=DIR"):
        load_pretrained_model("facebook/dinov2-small-not-cached")
