"""Label-guided multi-crop (DINO-LG, DINO-MX paper §3): local crops centred on annotated regions.

DINO's multi-crop asks the student to match the teacher's global view from random local
crops, most of which show background in images where the structure of interest is small (a
white blood cell in a smear, a calcification in a CT slice). Label guidance adds ``roi_crops``
local crops, each centred (up to a bounded jitter) on a region chosen at random among the
annotated regions of the selected classes, at a scale that contains the whole region; the
self-supervised objective is unchanged and no detection head is trained. With probability
``1 - roi_prob``, or when the image has no region of those classes, an extra crop is an
ordinary random local crop, so every sample has the same number of views (collation needs it).

Views: ``[global_1, global_2, local_1..local_n, roi_1..roi_r]``; the ROI crops have the local
size and the local photometric augmentations, so the student runs them with the other locals.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from dino_mx.config import AugmentConfig
from dino_mx.data.multicrop import MultiCrop, build_multicrop
from dino_mx.data.roi import Regions


def _centre(lo: float, hi: float, side: float, extent: int) -> float:
    """A crop centre drawn uniformly in ``[lo, hi]`` (the jitter interval), preferring the
    part that keeps the crop inside ``[0, extent]``; if none does, the point of the interval
    closest to the image centre."""
    inside_lo, inside_hi = max(lo, side / 2), min(hi, extent - side / 2)
    if inside_lo <= inside_hi:
        return inside_lo + (inside_hi - inside_lo) * float(torch.rand(()))
    return min(max(extent / 2, lo), hi)


def roi_crop_box(
    box: Tensor,
    height: int,
    width: int,
    scale: Sequence[float] = (1.0, 1.5),
    jitter: float = 0.1,
) -> tuple[float, float, float]:
    """A square crop around one region, drawn with the global torch RNG.

    The side is ``s = f * max(box width, box height)`` with ``f ~ U(scale)`` (at most the
    image's shorter side unless the box is larger), so the crop can hold the box. The crop
    centre is the box centre plus an offset of at most ``jitter * s`` per axis, further limited
    so that the box stays inside the crop: the region's centre is always in the crop, and the
    whole region is when ``f >= 1``.

    Args:
        box: (4,) ``x0, y0, x1, y1`` pixel edges.
        height, width: Image size in pixels.
        scale: Range of the crop side over the region's longer side (>= 1).
        jitter: Largest centre offset, as a fraction of the crop side (< 0.5).

    Returns:
        ``(top, left, side)`` of the crop in pixels (floats; may reach outside the image when
        the region is at its border).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    f = scale[0] + (scale[1] - scale[0]) * float(torch.rand(()))
    side = max(f * max(bw, bh), 1.0)
    side = min(side, max(min(height, width), bw, bh, 1.0))
    jx = max(0.0, min(jitter * side, (side - bw) / 2))  # (side - bw) / 2: box stays inside
    jy = max(0.0, min(jitter * side, (side - bh) / 2))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cx = _centre(cx - jx, cx + jx, side, width)
    cy = _centre(cy - jy, cy + jy, side, height)
    return cy - side / 2, cx - side / 2, side


class LabelGuidedCrop:
    """Multi-crop plus ``roi_crops`` region-centred local crops; called as
    ``transform(image, regions)``.

    Args:
        multicrop: The global and random local crops (and their photometric augmentations).
        local_size: Output side of the ROI crops (the multi-crop's local size).
        roi_crops: Number of extra crops.
        roi_prob: Probability that an extra crop is region-centred (when a region exists).
        roi_classes: Class ids to guide on; None for every class.
        roi_jitter: Largest centre offset as a fraction of the crop side, in [0, 0.5).
        roi_scale: Range of the crop side over the region's longer side, each >= 1.
    """

    uses_regions = True  # SeededAugment passes dataset.regions(index) as second argument

    def __init__(
        self,
        multicrop: MultiCrop,
        local_size: int,
        roi_crops: int = 2,
        roi_prob: float = 0.5,
        roi_classes: Collection[int] | None = None,
        roi_jitter: float = 0.1,
        roi_scale: Sequence[float] = (1.0, 1.5),
    ):
        if roi_crops < 0 or not 0.0 <= roi_prob <= 1.0:
            raise ValueError(
                f"need roi_crops >= 0 and roi_prob in [0, 1], got {roi_crops}, {roi_prob}"
            )
        if not 0.0 <= roi_jitter < 0.5:
            raise ValueError(
                f"roi_jitter must be in [0, 0.5) to keep the region's centre in the crop, "
                f"got {roi_jitter}"
            )
        if len(roi_scale) != 2 or not 1.0 <= roi_scale[0] <= roi_scale[1]:
            raise ValueError(
                "roi_scale must be [low, high] with 1 <= low <= high (a crop that holds the "
                f"region), got {list(roi_scale)}"
            )
        local = multicrop.local.transforms
        if not isinstance(local[0], v2.RandomResizedCrop):
            raise TypeError("the multi-crop's local view must start with RandomResizedCrop")
        self.multicrop = multicrop
        self.after_crop = v2.Compose(local[1:])  # flips, colour, blur, normalise: as locals
        self.local_size = local_size
        self.roi_crops = roi_crops
        self.roi_prob = roi_prob
        self.roi_classes = None if roi_classes is None else sorted(set(roi_classes))
        self.roi_jitter = roi_jitter
        self.roi_scale = (float(roi_scale[0]), float(roi_scale[1]))

    @property
    def n_views(self) -> int:
        return self.multicrop.n_views + self.roi_crops

    def roi_view(self, image: Tensor, box: Tensor) -> tuple[Tensor, tuple[float, float, float]]:
        """One augmented crop around ``box`` (4,), and its ``(top, left, side)``."""
        height, width = image.shape[-2:]
        top, left, side = roi_crop_box(box, height, width, self.roi_scale, self.roi_jitter)
        size = max(1, round(side))
        crop = F.resized_crop(
            image, round(top), round(left), size, size, [self.local_size] * 2, antialias=True
        )
        return self.after_crop(crop).as_subclass(Tensor), (top, left, side)

    def __call__(self, image: Tensor, regions: Regions | None = None) -> list[Tensor]:
        """Args: image (C, H, W) uint8; regions of the image (None or empty: none).

        Returns: ``n_views`` float tensors, globals then locals then the ROI crops.
        """
        views = self.multicrop(image)
        pool = (regions or Regions.empty()).select(self.roi_classes)
        for _ in range(self.roi_crops):
            # No region: no random draw, so the stream equals plain multi-crop's.
            if len(pool) and float(torch.rand(())) < self.roi_prob:
                box = pool.boxes[int(torch.randint(len(pool), ()))]
                views.append(self.roi_view(image, box)[0])
            else:
                views.append(self.multicrop.local(image).as_subclass(Tensor))
        return views


def build_label_guided(
    cfg: AugmentConfig,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    roi_classes: Collection[int] | None,
) -> LabelGuidedCrop:
    """Builder: the ``augment=label_guided`` config to a :class:`LabelGuidedCrop`;
    ``roi_classes`` are ``augment.roi_classes`` resolved to ids (None: every class)."""
    return LabelGuidedCrop(
        build_multicrop(cfg, channels, mean, std),
        cfg.local_size,
        roi_crops=cfg.roi_crops,
        roi_prob=cfg.roi_prob,
        roi_classes=roi_classes,
        roi_jitter=cfg.roi_jitter,
        roi_scale=cfg.roi_scale,
    )
