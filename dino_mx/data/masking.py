"""Block-wise patch masks for iBOT / DINOv2 masked-image modelling.

Masks are unions of rectangles of patches, as in BEiT (Bao et al., ICLR 2022), iBOT (Zhou et al.,
ICLR 2022) and DINOv2 (Oquab et al., 2023): hiding whole blocks forces the student to infer
content from context, where scattered single patches could be copied from their neighbours.

They are drawn per sample, inside :class:`~dino_mx.data.SeededAugment`, from the torch RNG that
the sampler's per-sample seed has set: a sample's masks, like its crops, depend only on the run
seed and its position in the data stream, so a resumed run sees the same masks bit for bit and
the number of loader workers does not matter. (DINOv2 draws them in its collate function from
Python's ``random``, which no seed of ours would reach.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def _randint(low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, ()).item())


class BlockMaskGenerator:
    """Masks of exactly ``n`` patches on an ``(h, w)`` grid, made of rectangular blocks.

    Rectangles of ``min_block`` to ``max_block`` patches with aspect ratios in ``[min_aspect,
    max_aspect]`` (log-uniform) are placed at random, overlaps allowed, while each adds at least
    one and at most the remaining number of patches (BEiT's procedure). When no further
    rectangle fits, the mask grows by patches adjacent to it until it holds exactly ``n``: every
    4-connected component has at least ``min(min_block, n)`` patches, never a lone pixel.

    Args:
        grid: (h, w) patches, or one int for a square grid.
        min_block: Smallest rectangle, in patches (BEiT / DINOv2: 4).
        max_block: Largest rectangle; None = no limit beyond the target count.
        min_aspect: Smallest height / width ratio (0.3); the largest is ``1 / min_aspect``
            unless ``max_aspect`` is given.
        max_attempts: Consecutive failed placements before switching to growth.

    Randomness comes from torch's global RNG, so the caller's seed decides the mask.
    """

    def __init__(
        self,
        grid: int | Sequence[int],
        min_block: int = 4,
        max_block: int | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        max_attempts: int = 10,
    ):
        self.height, self.width = (grid, grid) if isinstance(grid, int) else tuple(grid)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"mask grid must be at least 1x1, got {self.height}x{self.width}")
        if min_block < 1 or (max_block is not None and max_block < min_block):
            raise ValueError(f"need 1 <= min_block <= max_block, got {min_block}, {max_block}")
        if not 0 < min_aspect <= 1:
            raise ValueError(f"min_aspect must be in (0, 1], got {min_aspect}")
        self.num_patches = self.height * self.width
        self.min_block = min_block
        self.max_block = max_block or self.num_patches
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
        self.max_attempts = max_attempts

    def _place_block(self, mask: Tensor, remaining: int) -> int:
        """Try to add one rectangle of at most ``remaining`` new patches; returns how many."""
        area = _uniform(self.min_block, min(remaining, self.max_block))
        aspect = math.exp(_uniform(*self.log_aspect))
        h = round(math.sqrt(area * aspect))
        w = round(math.sqrt(area / aspect))
        if h * w < self.min_block or h > self.height or w > self.width:
            return 0
        top, left = _randint(0, self.height - h), _randint(0, self.width - w)
        block = mask[top : top + h, left : left + w]
        new = h * w - int(block.sum())
        if not 0 < new <= remaining:
            return 0
        block.fill_(True)
        return new

    def _grow(self, mask: Tensor, count: int, target: int) -> None:
        """Add patches adjacent to the mask (4-neighbours) at random until ``target``."""
        if count == 0:
            mask.view(-1)[_randint(0, self.num_patches - 1)] = True
            count = 1
        while count < target:
            near = torch.zeros_like(mask)
            near[1:] |= mask[:-1]
            near[:-1] |= mask[1:]
            near[:, 1:] |= mask[:, :-1]
            near[:, :-1] |= mask[:, 1:]
            frontier = (near & ~mask).view(-1).nonzero().view(-1)  # (F,) flat indices
            mask.view(-1)[frontier[_randint(0, len(frontier) - 1)]] = True
            count += 1

    def __call__(self, num_masked: int) -> Tensor:
        """An (h, w) bool mask with exactly ``num_masked`` True patches."""
        if not 0 <= num_masked <= self.num_patches:
            raise ValueError(f"num_masked must be in [0, {self.num_patches}], got {num_masked}")
        mask = torch.zeros(self.height, self.width, dtype=torch.bool)
        count, failures = 0, 0
        while count < num_masked and failures < self.max_attempts:
            if num_masked - count < self.min_block:
                break
            added = self._place_block(mask, num_masked - count)
            count += added
            failures = 0 if added else failures + 1
        if count < num_masked:
            self._grow(mask, count, num_masked)
        return mask


class MaskedCrops:
    """A multi-crop transform plus one block mask per global crop: ``image -> (crops, masks)``.

    Each global crop is masked with probability ``mask_sample_probability``; a masked crop hides
    a share of its patches drawn uniformly in ``mask_ratio_min_max`` (rounded to whole patches
    inside that range). DINOv2 stratifies the ratios over its batch; drawing them per sample has
    the same distribution and keeps each sample a function of its own seed.

    Args:
        transform: ``image (, regions) -> [global_1, ..., local_n]``, globals first
            (:class:`~dino_mx.data.MultiCrop` or :class:`~dino_mx.data.LabelGuidedCrop`).
        grid: Patch grid (h, w) of a global crop: ``global_size // patch_size`` per side.
        n_global: Number of global crops (2).
        mask_ratio_min_max: Range of the masked share of patches (DINOv2: 0.1-0.5).
        mask_sample_probability: Chance a global crop is masked at all (DINOv2: 0.5).
        min_block: Smallest block in patches (see :class:`BlockMaskGenerator`).

    Returns (from ``__call__``): the crops and an (n_global, h * w) bool tensor, True = masked,
    patches in raster order as the backbone's ``bool_masked_pos``.
    """

    def __init__(
        self,
        transform: Callable[..., list[Tensor]],
        grid: int | Sequence[int],
        n_global: int = 2,
        mask_ratio_min_max: Sequence[float] = (0.1, 0.5),
        mask_sample_probability: float = 0.5,
        min_block: int = 4,
    ):
        self.transform = transform
        self.generator = BlockMaskGenerator(grid, min_block=min_block)
        low, high = (float(r) for r in mask_ratio_min_max)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"mask_ratio_min_max needs 0 <= min <= max <= 1, got {low, high}")
        if not 0.0 <= mask_sample_probability <= 1.0:
            raise ValueError(f"mask_sample_probability not in [0, 1]: {mask_sample_probability}")
        n = self.generator.num_patches
        self.count_range = (math.ceil(low * n - 1e-9), math.floor(high * n + 1e-9))
        if self.count_range[0] > self.count_range[1]:
            raise ValueError(
                f"mask_ratio_min_max {low, high} holds no whole number of the {n} patches of a "
                "global crop: widen the range or use smaller patches"
            )
        self.ratio = (low, high)
        self.n_global = n_global
        self.probability = mask_sample_probability

    @property
    def uses_regions(self) -> bool:
        """Passed through, so label-guided crops still receive their boxes."""
        return getattr(self.transform, "uses_regions", False)

    def sample_mask(self) -> Tensor:
        """One global crop's (h * w,) mask: empty, or a block mask of a ratio in the range."""
        if torch.rand(()).item() >= self.probability:
            return torch.zeros(self.generator.num_patches, dtype=torch.bool)
        count = round(_uniform(*self.ratio) * self.generator.num_patches)
        count = min(max(count, self.count_range[0]), self.count_range[1])
        return self.generator(count).view(-1)

    def __call__(self, image: Tensor, *extra: Any) -> tuple[list[Tensor], Tensor]:
        crops = self.transform(image, *extra)
        masks = torch.stack([self.sample_mask() for _ in range(self.n_global)])  # (n_global, N)
        return crops, masks
