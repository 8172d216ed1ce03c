"""Figures with PIL only: heat-map colours, overlays, boxes and labelled image grids.

Every function takes and returns uint8 ``(H, W, 3)`` arrays except :func:`grid`, which makes
the PIL image that is saved as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Anchors of matplotlib's "inferno" colour map (perceptually uniform, dark to bright).
_INFERNO = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
# Distinct colours for segments and box classes (Tableau 10).
PALETTE = np.array(
    [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ],
    dtype=np.uint8,
)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 inferno colours; values are min-max scaled first."""
    v = np.asarray(values, dtype=np.float64)
    v = (v - v.min()) / max(float(v.max() - v.min()), 1e-12)
    position = v * (len(_INFERNO) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(_INFERNO) - 2)
    frac = (position - low)[..., None]
    rgb = _INFERNO[low] * (1 - frac) + _INFERNO[low + 1] * frac
    return rgb.round().astype(np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> (H, W, 3)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def resize(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """A (H, W, 3) uint8 image resized to ``size`` x ``size``."""
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(to_rgb(image)).resize((size, size), method))


def blend(image: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``alpha`` of ``colors`` over ``image``, both (H, W, 3) uint8."""
    mixed = (1 - alpha) * to_rgb(image).astype(np.float64) + alpha * colors.astype(np.float64)
    return mixed.round().astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """The image inside ``mask`` (H, W) bool, darkened to ``dim`` outside (DINO's masks)."""
    scale = np.where(mask, 1.0, dim)[..., None]
    return (to_rgb(image).astype(np.float64) * scale).round().astype(np.uint8)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(H, W) int labels -> (H, W, 3) palette colours."""
    return PALETTE[np.asarray(labels) % len(PALETTE)]


def draw_boxes(
    image: np.ndarray, boxes: np.ndarray, classes: Sequence[int] | None = None, width: int = 1
) -> np.ndarray:
    """Rectangles ``x0, y0, x1, y1`` (pixel edges in ``image``) coloured by class."""
    canvas = Image.fromarray(to_rgb(image).copy())
    draw = ImageDraw.Draw(canvas)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64)):
        colour = PALETTE[(classes[i] if classes is not None else 0) % len(PALETTE)]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(int(c) for c in colour), width=width)
    return np.asarray(canvas)


def grid(
    rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str] = (), pad: int = 2
) -> Image.Image:
    """Tiles (all the same (S, S, 3) size) in rows, with a title line over each column."""
    if not rows or not rows[0]:
        raise ValueError("grid needs at least one tile")
    side = rows[0][0].shape[0]
    n_cols = max(len(r) for r in rows)
    title = 12 if columns else 0
    width, height = n_cols * (side + pad) + pad, len(rows) * (side + pad) + pad + title
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((pad + j * (side + pad), 0), name[: max(1, side // 6)], fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            box = (pad + j * (side + pad), title + pad + i * (side + pad))
            canvas.paste(Image.fromarray(to_rgb(tile)), box)
    return canvas


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
