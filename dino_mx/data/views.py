"""One micro-batch of multi-crop views, as the training step consumes it.

The per-sample transform (:class:`~dino_mx.data.MultiCrop`, optionally wrapped by
:class:`~dino_mx.data.MaskedCrops` for iBOT) and the loader's collate produce either a list of
crops or ``[crops, masks]``; :meth:`Views.from_batch` gives both one typed shape, so nothing
downstream needs to know which method made the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from torch import Tensor

N_GLOBAL = 2  # global crops per image: the first crops of every sample (DINO, DINOv2)


@dataclass(frozen=True)
class Views:
    """The crops of one micro-batch and, for iBOT, the patch masks of its global crops.

    Attributes:
        crops: ``N_GLOBAL`` global crops first, then the local ones; each (B, C, H_i, W_i),
            crops of one size consecutive. With ``augment.backend=batched`` the loader yields
            ``[images]`` (B, C, H, W) and :meth:`map_crops` makes the crops on the device.
        masks: (B, N_GLOBAL, N) bool, True = patch hidden from the student; None without iBOT.
    """

    crops: list[Tensor]
    masks: Tensor | None = None

    @classmethod
    def from_batch(cls, batch: Any) -> Views:
        """A collated batch: ``crops`` (a list of tensors) or ``[crops, masks]``."""
        if len(batch) == 2 and isinstance(batch[0], (list, tuple)):
            return cls(list(batch[0]), batch[1])
        return cls(list(batch))

    @property
    def batch_size(self) -> int:
        return self.crops[0].shape[0]

    @cached_property
    def flat_masks(self) -> Tensor | None:
        """(N_GLOBAL * B, N): the masks stacked crop by crop, the order of
        ``torch.cat(crops[:N_GLOBAL])``; None without masks. Computed once per micro-batch
        (the networks and the iBOT term all read it)."""
        if self.masks is None:
            return None
        return self.masks.transpose(0, 1).flatten(0, 1)

    def map_crops(self, fn: Callable[[list[Tensor]], list[Tensor]]) -> Views:
        """These views with the crops replaced by ``fn(crops)`` (the masks kept)."""
        return dataclasses.replace(self, crops=fn(self.crops))


VIEWS = ("global", "local", "all")


def view_indices(which: str, n_views: int, n_global: int = N_GLOBAL) -> list[int]:
    """Indices of the ``global``, ``local`` or ``all`` views among ``n_views`` crops."""
    if which not in VIEWS:
        raise ValueError(f"distill views '{which}'; valid choices: {', '.join(VIEWS)}")
    if which == "global":
        return list(range(min(n_global, n_views)))
    if which == "local":
        return list(range(n_global, n_views))
    return list(range(n_views))
