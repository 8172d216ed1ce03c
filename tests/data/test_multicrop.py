import pytest
import torch
from torchvision.transforms import v2

from dino_mx.data import InfiniteSampler, MultiCrop, SeededAugment


@pytest.mark.parametrize("channels", [1, 3])
def test_views_and_shapes(channels):
    crop = MultiCrop(channels, [0.5], [0.25], global_size=28, local_size=12, n_local=5)
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
        global_size=8,
        local_size=4,
        n_local=1,
        global_scale=(1.0, 1.0),
        local_scale=(1.0, 1.0),
        color_jitter=0,
        grayscale=0,
        blur=(0, 0, 0),
        solarize=0,
    )
    views = crop(torch.full((3, 8, 8), 255, dtype=torch.uint8))
    for v in views:
        torch.testing.assert_close(v[:, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


def test_medical_preset_has_no_colour_distortion_and_grey_skips_colour_ops():
    medical = MultiCrop(3, [0.5], [0.5], saturation=0, hue=0, grayscale=0, solarize=0)
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
    with pytest.raises(ValueError, match="mean/std"):
        MultiCrop(3, [0.5, 0.5], [0.5, 0.5])


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
    ds = SeededAugment(data, MultiCrop(1, [0.5], [0.5], global_size=16, local_size=8))
    state = torch.get_rng_state()
    a, b, c = ds[(0, 7)][0], ds[(0, 7)][0], ds[(0, 8)][0]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
