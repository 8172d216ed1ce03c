"""Block masks: exact counts inside the ratio range, rectangles not scattered pixels, seeded."""

import pytest
import torch

from dino_mx.data import BlockMaskGenerator, InfiniteSampler, MaskedCrops, SeededAugment


def components(mask):
    """Sizes of the 4-connected components of a (h, w) bool mask."""
    h, w = mask.shape
    seen, sizes = set(), []
    for start in zip(*torch.nonzero(mask, as_tuple=True)):
        start = (int(start[0]), int(start[1]))
        if start in seen:
            continue
        stack, size = [start], 0
        seen.add(start)
        while stack:
            i, j = stack.pop()
            size += 1
            for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if 0 <= a < h and 0 <= b < w and mask[a, b] and (a, b) not in seen:
                    seen.add((a, b))
                    stack.append((a, b))
        sizes.append(size)
    return sizes


def largest_full_rectangle(mask):
    """Area of the largest all-True axis-aligned rectangle (brute force, small grids)."""
    h, w = mask.shape
    best = 0
    for top in range(h):
        for left in range(w):
            for bottom in range(top + 1, h + 1):
                for right in range(left + 1, w + 1):
                    if mask[top:bottom, left:right].all():
                        best = max(best, (bottom - top) * (right - left))
    return best


@pytest.mark.parametrize("grid", [(7, 7), (16, 16), (4, 9)])
def test_masks_hold_exactly_the_requested_count_in_blocks(grid):
    torch.manual_seed(0)
    gen = BlockMaskGenerator(grid, min_block=4)
    n = grid[0] * grid[1]
    for count in [0, 1, 3, 4, 5, n // 10, n // 4, n // 2]:
        for _ in range(10):
            mask = gen(count)
            assert mask.shape == grid and mask.dtype == torch.bool
            assert int(mask.sum()) == count
            if count:
                sizes = components(mask)
                assert min(sizes) >= min(4, count), sizes  # never a lone patch
                assert len(sizes) <= max(1, count // 4)
            if count >= 4 and grid == (7, 7):
                assert largest_full_rectangle(mask) >= 4  # a real block is in there


def test_blocks_are_far_less_fragmented_than_random_patches():
    torch.manual_seed(1)
    gen = BlockMaskGenerator(16, min_block=4)
    block = [len(components(gen(64))) for _ in range(20)]
    scattered = []
    for _ in range(20):
        mask = torch.zeros(256, dtype=torch.bool)
        mask[torch.randperm(256)[:64]] = True
        scattered.append(len(components(mask.view(16, 16))))
    assert sum(block) / 20 <= 4 < 10 <= sum(scattered) / 20


def identity_crops(image):
    return [image.float(), image.float() + 1, image.float()[:, :2, :2]]


@pytest.mark.parametrize("ratio", [(0.1, 0.5), (0.2, 0.3), (0.0, 0.2)])
def test_masked_crops_respect_the_ratio_range_and_probability(ratio):
    torch.manual_seed(2)
    masking = MaskedCrops(identity_crops, (7, 7), 2, ratio, mask_sample_probability=0.5)
    shares, masked = [], 0
    for _ in range(300):
        crops, masks = masking(torch.zeros(1, 28, 28, dtype=torch.uint8))
        assert len(crops) == 3 and masks.shape == (2, 49) and masks.dtype == torch.bool
        for m in masks:
            if m.any():
                masked += 1
                shares.append(m.sum().item() / 49)
    assert all(ratio[0] <= s <= ratio[1] for s in shares), (min(shares), max(shares))
    if ratio[0] > 0:  # else a crop drawn for masking may hide 0 patches
        assert 0.4 < masked / 600 < 0.6
    if ratio[1] > ratio[0]:
        assert max(shares) - min(shares) > (ratio[1] - ratio[0]) / 2  # the range is used


@pytest.mark.parametrize("p, expected", [(0.0, 0), (1.0, 40)])
def test_probability_zero_never_masks_and_one_always_does(p, expected):
    masking = MaskedCrops(identity_crops, 7, 2, (0.1, 0.5), mask_sample_probability=p)
    n = sum(bool(m.any()) for _ in range(20) for m in masking(torch.zeros(1, 8, 8))[1])
    assert n == expected


def test_masks_are_a_function_of_the_sample_seed():
    data = [(torch.randint(0, 255, (1, 28, 28), dtype=torch.uint8), 0) for _ in range(6)]
    masking = MaskedCrops(identity_crops, 7, 2, (0.1, 0.5), mask_sample_probability=1.0)
    seeded = SeededAugment(data, masking)
    items = list(zip(range(6), iter(InfiniteSampler(6, seed=3))))
    first = [seeded[item][0][1] for _, item in items]
    torch.manual_seed(123)  # the global RNG state must not matter
    again = [seeded[item][0][1] for _, item in items]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(m.flatten().tolist()) for m in first}) > 1


def test_region_aware_transforms_keep_their_regions():
    class WithRegions:
        uses_regions = True

        def __call__(self, image, regions):
            assert regions == "boxes"
            return [image, image]

    masking = MaskedCrops(WithRegions(), 4, 2, (0.25, 0.5))
    assert masking.uses_regions
    masking(torch.zeros(1, 4, 4), "boxes")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask_ratio_min_max": (0.5, 0.1)}, "min <= max"),
        ({"mask_ratio_min_max": (0.01, 0.02)}, "no whole number"),
        ({"mask_sample_probability": 1.5}, "mask_sample_probability"),
    ],
)
def test_bad_settings_raise_with_a_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskedCrops(identity_crops, 7, **kwargs)
