"""``dino-mx visualize attention|pca``: PNG grids of what a ViT attends to and how its patch
features group, on ``--n`` images spread evenly over a split.

Launch it as

    dino-mx visualize attention --ckpt runs/lg --data bccd_roi --data-root ../shared/data --n 8
    dino-mx visualize pca --ckpt runs/lg --n 8 --k 4
    dino-mx visualize attention --model dinov2_small --data bloodcells --out figures/

``attention`` writes ``attention_{split}.png``: per image (rows) the image with its boxes, the
head-mean CLS attention, DINO's top-``keep`` mass mask and every head. ``pca`` writes
``pca_{split}.png``: the image, the foreground PCA in RGB and the k-means segments. Files go
to ``RUN/samples/`` for a checkpoint, else to ``--out``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dino_mx.data import build_dataset
from dino_mx.eval import render
from dino_mx.eval.attention import cls_attention, top_mass_mask, upsample
from dino_mx.eval.localize import network_backbone, vit_and_data
from dino_mx.eval.network import NetworkSpec
from dino_mx.eval.patches import kmeans_segments, patch_features, pca_rgb
from dino_mx.models.backbone import Backbone

log = logging.getLogger(__name__)
KINDS = ("attention", "pca")


def _tiles(raw: Sequence[Tensor], boxes: Sequence[Tensor | None], tile: int) -> list[np.ndarray]:
    """Raw (C, H, W) uint8 images -> (tile, tile, 3) uint8 with their boxes drawn."""
    out = []
    for image, b in zip(raw, boxes):
        array = image.as_subclass(Tensor).permute(1, 2, 0).numpy()  # CHW -> HWC
        scaled = render.resize(array, tile)
        if b is not None and len(b):
            scale = torch.tensor([tile / image.shape[2], tile / image.shape[1]] * 2)
            scaled = render.draw_boxes(scaled, (b * scale).numpy())
        out.append(scaled)
    return out


def _attention_rows(
    backbone: Backbone, images: Tensor, tiles: list[np.ndarray], tile: int, keep: float
) -> tuple[list[list[np.ndarray]], list[str]]:
    """Per image: the tile, the head-mean attention, DINO's top-``keep`` mask, every head."""
    maps = cls_attention(backbone, images).cpu()  # (n, heads, h, w)
    maps = torch.cat([maps.mean(1, keepdim=True), maps], 1)  # head mean first
    masks = top_mass_mask(maps[:, 0], keep)  # (n, h, w)
    up = upsample(maps, (tile, tile)).numpy()
    up_masks = upsample(masks[:, None].float(), (tile, tile))[:, 0].numpy() > 0
    rows = [
        [image, render.blend(image, render.heat_colors(up[i, 0]), 0.6)]
        + [render.mask_overlay(image, up_masks[i])]
        + [render.blend(image, render.heat_colors(m), 0.6) for m in up[i, 1:]]
        for i, image in enumerate(tiles)
    ]
    heads = [f"head {h}" for h in range(maps.shape[1] - 1)]
    return rows, ["image", "mean", f"top {keep:.0%}", *heads]


def _pca_rows(
    backbone: Backbone,
    images: Tensor,
    tiles: list[np.ndarray],
    tile: int,
    k: int,
    bg_threshold: float | None,
) -> tuple[list[list[np.ndarray]], list[str]]:
    """Per image: the tile, the foreground patch PCA in RGB, the k-means segments."""
    features = patch_features(backbone, images)  # (n, h, w, D)
    rgb, _ = pca_rgb(features, bg_threshold)
    segments = kmeans_segments(features, k)
    rows = [
        [
            image,
            render.resize((rgb[i] * 255).round().astype(np.uint8), tile, nearest=True),
            render.blend(image, render.resize(render.label_colors(segments[i]), tile, True)),
        ]
        for i, image in enumerate(tiles)
    ]
    return rows, ["image", "PCA", f"k-means {k}"]


def visualize(
    kind: str,
    spec: NetworkSpec,
    *,
    split: str = "test",
    n: int = 8,
    image_size: int | None = None,
    keep: float = 0.6,
    k: int = 4,
    bg_threshold: float | None = 0.5,
    roi_class: str | None = None,
    out_dir: str | Path | None = None,
    device: str | None = None,
) -> Path:
    """Draw the ``kind`` grid (``attention`` or ``pca``) for ``n`` images of ``split``.

    Args:
        kind: ``attention`` or ``pca``.
        spec: The network (a checkpoint or a model: attention needs a ViT) and the data.
        split: Split the images come from; ``n`` of them, evenly spaced.
        image_size: Input side; default the training global-crop size.
        keep: Attention mass kept by DINO's mask.
        k: k-means clusters; bg_threshold: PCA background threshold (None: no background).
        roi_class: Only draw boxes of this class (name or id); default all.
        out_dir: Output folder; default ``RUN/samples``.

    Returns:
        Path of the PNG written.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    net, dataset, size = vit_and_data(spec, split, image_size)
    if out_dir is None:
        if net.run_dir is None:
            raise ValueError("pass --out DIR: there is no run directory to write samples into")
        out_dir = net.run_dir / "samples"
    raw_data = build_dataset(net.cfg.data, split)
    backbone = network_backbone(net, dataset.channels)
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int))
    images = torch.stack([dataset[int(i)][0].as_subclass(Tensor) for i in indices])
    has_regions = hasattr(raw_data, "regions")
    classes = raw_data.class_ids([roi_class]) if has_regions and roi_class is not None else None
    boxes = [
        raw_data.regions(int(i)).select(classes).boxes if has_regions else None for i in indices
    ]
    tile = size * max(1, round(128 / size))
    tiles = _tiles([raw_data[int(i)][0] for i in indices], boxes, tile)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    backbone.eval().to(device)
    images = images.to(device)
    if kind == "attention":
        rows, columns = _attention_rows(backbone, images, tiles, tile, keep)
    else:
        rows, columns = _pca_rows(backbone, images, tiles, tile, k, bg_threshold)
    path = render.save_png(render.grid(rows, columns), Path(out_dir) / f"{kind}_{split}.png")
    log.info("wrote %s (%s images %s)", path, split, indices.tolist())
    return path
