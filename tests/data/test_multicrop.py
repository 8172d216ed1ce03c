import logging

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from dino_mx.data import CropRecipe, InfiniteSampler, MultiCrop, SeededAugment
from dino_mx.data.multicrop import ChannelJitter


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_views_and_shapes(channels):
    crop = MultiCrop(channels, [0.5], [0.25], CropRecipe(global_size=28, local_size=12, n_local=5))
    image = torch.randint(0, 256, (channels, 32, 40), dtype=torch.uint8)
    views = crop(image)
    assert crop.n_views == 7 and len(views) == 7
    assert [tuple(v.shape) for v in views[:2]] == [(channels, 28, 28)] * 2
    assert [tuple(v.shape) for v in views[2:]] == [(channels, 12, 12)] * 5
    assert all(v.dtype == torch.float32 and type(v) is torch.Tensor for v in views)


def test_normalisation_maps_pixel_values_exactly():
    # No photometric change, full-image crops: a constant 255 image becomes (1 - mean) / std.
    crop = MultiCrop(
        3,
        [0.5, 0.25, 0.0],
        [0.5, 0.25, 1.0],
        CropRecipe(
            global_size=8,
            local_size=4,
            n_local=1,
            global_scale=(1.0, 1.0),
            local_scale=(1.0, 1.0),
            color_jitter=0,
            grayscale=0,
            blur=(0, 0, 0),
            solarize=0,
        ),
    )
    views = crop(torch.full((3, 8, 8), 255, dtype=torch.uint8))
    for v in views:
        torch.testing.assert_close(v[:, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


def test_medical_preset_has_no_colour_distortion_and_grey_skips_colour_ops():
    medical = MultiCrop(3, [0.5], [0.5], CropRecipe(saturation=0, hue=0, grayscale=0, solarize=0))
    kinds = {type(t).__name__ for t in medical.global_2.transforms}
    assert "RandomSolarize" not in kinds and "RandomGrayscale" not in kinds
    grey = MultiCrop(1, [0.5], [0.5])
    jitters = [
        t
        for t in grey.global_1.transforms
        if isinstance(t, v2.RandomApply) and isinstance(t.transforms[0], v2.ColorJitter)
    ]
    assert jitters and jitters[0].transforms[0].hue is None
    assert not any(isinstance(t, v2.RandomGrayscale) for t in grey.global_1.transforms)


def test_bad_normalisation_raises():
    with pytest.raises(ValueError, match=r"data.mean has 2 values .* for 3-channel images"):
        MultiCrop(3, [0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"data.std has 3 values .* for 4-channel images"):
        MultiCrop(4, [0.5], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        MultiCrop(0, [0.5], [0.5])


# Four channels: nothing random but what a test switches on; full-image crops.
STILL = dict(
    global_size=8,
    local_size=4,
    n_local=1,
    global_scale=(1.0, 1.0),
    local_scale=(1.0, 1.0),
    hflip=0.0,
    color_jitter=0.0,
    blur=(0, 0, 0),
    solarize=0.0,
)


def test_four_channels_normalise_each_channel_with_its_own_statistics():
    crop = MultiCrop(4, [0.0, 0.5, 0.25, 1.0], [1.0, 0.5, 0.25, 0.5], CropRecipe(**STILL))
    views = crop(torch.full((4, 8, 8), 255, dtype=torch.uint8))
    assert [tuple(v.shape) for v in views] == [(4, 8, 8), (4, 8, 8), (4, 4, 4)]
    for v in views:  # (1 - mean) / std per channel
        torch.testing.assert_close(v, torch.tensor([1.0, 1.0, 3.0, 0.0]).view(4, 1, 1).expand_as(v))
    # One value broadcast: (51 / 255 - 0.5) / 0.5 = -0.6 in every channel.
    views = MultiCrop(4, [0.5], [0.5], CropRecipe(**STILL))(
        torch.full((4, 8, 8), 51, dtype=torch.uint8)
    )
    torch.testing.assert_close(views[0], torch.full((4, 8, 8), -0.6))


def test_four_channels_flip_and_solarise_every_channel():
    image = torch.arange(4 * 8 * 8, dtype=torch.int64).remainder(256).to(torch.uint8).view(4, 8, 8)
    crop = MultiCrop(4, [0.0], [1.0], CropRecipe(**(STILL | dict(hflip=1.0, solarize=1.0))))
    g1, g2, _ = crop(image)
    flipped = image.flip(-1).float() / 255
    torch.testing.assert_close(g1, flipped)
    # Solarise (second global view, p=1): values >= 128 become 255 - value, in each channel.
    solar = torch.where(image >= 128, 255 - image, image).flip(-1).float() / 255
    torch.testing.assert_close(g2, solar)


def test_four_channel_jitter_scales_every_channel_by_the_same_brightness_factor():
    # Contrast off: ChannelJitter maps each channel x to floor(b * x) for one b in [0.6, 1.4].
    crop = MultiCrop(4, [0.0], [1.0], CropRecipe(**(STILL | dict(color_jitter=1.0, contrast=0.0))))
    jitters = [t.transforms[0] for t in crop.global_1.transforms if isinstance(t, v2.RandomApply)]
    assert [type(j) for j in jitters] == [ChannelJitter]  # not ColorJitter: it refuses C = 4
    x = torch.tensor([40.0, 80.0, 120.0, 160.0])  # at most 224 after b = 1.4: no clipping
    image = x.to(torch.uint8).view(4, 1, 1).expand(4, 8, 8)
    torch.manual_seed(0)
    out = (crop(image)[0] * 255).round()  # (4, 8, 8)
    assert (out == out[:, :1, :1]).all()  # still constant per channel
    out = out[:, 0, 0]
    # floor(b * x_c) = out_c  <=>  b in [out_c / x_c, (out_c + 1) / x_c): one b fits all four.
    low, high = (out / x).max(), ((out + 1) / x).min()
    assert low < high and 0.6 <= low and high <= 1.4 + 1 / 160
    assert not (low <= 1 < high)  # the draw changed the image


def test_channel_jitter_equals_torchvision_on_grey_and_blends_with_the_mean_of_all_channels():
    grey = torch.randint(0, 256, (1, 6, 6), dtype=torch.uint8)
    for factor in (0.6, 1.3):
        assert torch.equal(
            ChannelJitter.adjust_brightness(grey, factor), F.adjust_brightness(grey, factor)
        )
        assert torch.equal(
            ChannelJitter.adjust_contrast(grey, factor), F.adjust_contrast(grey, factor)
        )
    # Four constant channels 0, 100, 200, 100: mean 100, contrast 0.5 -> 50, 100, 150, 100.
    image = torch.tensor([0.0, 100.0, 200.0, 100.0]).view(4, 1, 1).expand(4, 3, 3) / 255
    out = ChannelJitter.adjust_contrast(image, 0.5) * 255
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([50.0, 100.0, 150.0, 100.0]))


def test_rgb_only_operations_are_skipped_and_logged_for_four_channels(caplog):
    with caplog.at_level(logging.INFO, logger="dino_mx.data.crop_recipe"):
        crop = MultiCrop(
            4,
            [0.5],
            [0.5],
            CropRecipe(global_size=16, local_size=8, saturation=0.2, hue=0.1, grayscale=0.2),
        )
    assert "4-channel images: augment.saturation=0.2, augment.hue=0.1, augment.grayscale=0.2" in (
        caplog.text
    )
    kinds = {type(t).__name__ for t in crop.global_1.transforms}
    assert "RandomGrayscale" not in kinds
    views = crop(torch.randint(0, 256, (4, 20, 20), dtype=torch.uint8))
    assert [v.shape[0] for v in views] == [4] * crop.n_views
    assert all(torch.isfinite(v).all() for v in views)


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_is_deterministic_sharded_and_resumable():
    full = take(InfiniteSampler(10, seed=3), 25)
    assert sorted(i for i, _ in full[:10]) == list(range(10))  # each epoch is a permutation
    assert take(InfiniteSampler(10, seed=3, start=13), 12) == full[13:]
    r0 = take(InfiniteSampler(10, seed=3, rank=0, world_size=2), 5)
    r1 = take(InfiniteSampler(10, seed=3, rank=1, world_size=2), 5)
    assert sorted(i for i, _ in r0 + r1) == list(range(10))
    assert [i for i, _ in full[:10]] == [x for pair in zip(r0, r1) for x, _ in pair]


def test_seeded_augment_repeats_crops_and_leaves_global_rng_alone():
    data = [(torch.randint(0, 256, (1, 20, 20), dtype=torch.uint8), 0)]
    ds = SeededAugment(data, MultiCrop(1, [0.5], [0.5], CropRecipe(global_size=16, local_size=8)))
    state = torch.get_rng_state()
    a, b, c = ds[(0, 7)][0], ds[(0, 7)][0], ds[(0, 8)][0]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
