"""Deterministic, resumable sampling: the data order, every crop and every iBOT mask depend
only on the seed.

:class:`InfiniteSampler` yields ``(index, augmentation_seed)`` pairs from a stream of per-epoch
permutations, sharded across processes. :class:`SeededAugment` seeds the random transforms of
each sample with its pair's seed. Together they make a run's data independent of the number of
loader workers and let a resumed run continue the exact stream: skipping ``n`` samples costs
arithmetic, not loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

_SEED_STRIDE = 1_000_003  # a prime > any epoch length we sample, so seeds never collide


class InfiniteSampler(Sampler[tuple[int, int]]):
    """Endless shuffled ``(index, seed)`` pairs for one process of ``world_size``.

    Every epoch is a fresh permutation of ``range(size)`` drawn from ``(seed, epoch)``, truncated
    to a multiple of ``world_size`` so that all processes see as many samples; process ``rank``
    takes every ``world_size``-th element.

    Args:
        size: Dataset length.
        seed: Run seed.
        rank, world_size: This process and the number of processes.
        start: Number of this process's samples to skip (resume).
    """

    def __init__(
        self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0
    ):
        if size < world_size:
            raise ValueError(f"dataset of {size} samples is smaller than world size {world_size}")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.per_rank = size // world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            g = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + epoch)
            perm = torch.randperm(self.size, generator=g)[: self.per_rank * self.world_size]
            for pos in range(offset, self.per_rank):
                index = int(perm[pos * self.world_size + self.rank])
                # One seed per (run seed, epoch, position in the global order).
                position = pos * self.world_size + self.rank
                yield index, hash((self.seed, epoch, position)) & 0x7FFFFFFF
            epoch, offset = epoch + 1, 0


class SeededAugment(Dataset):
    """Applies ``transform`` to ``dataset[index]`` under ``torch.manual_seed(seed)``.

    A transform with ``uses_regions = True`` is called as ``transform(image,
    dataset.regions(index))`` (see :class:`dino_mx.data.LabelGuidedCrop`).

    The global RNG is forked so the caller's random state is left untouched (this also runs in
    the main process when ``num_workers=0``).
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any]):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, Any]:
        index, seed = item
        image, label = self.dataset[index]
        # A transform that declares `uses_regions` (label-guided crops) also gets the boxes.
        uses_regions = getattr(self.transform, "uses_regions", False)
        extra = (self.dataset.regions(index),) if uses_regions else ()  # type: ignore[attr-defined]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image, *extra), label
