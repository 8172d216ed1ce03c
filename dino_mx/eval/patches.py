"""Unsupervised maps of patch features: PCA to RGB and k-means segments.

The PCA follows the demos of DINOv2 (Oquab et al., TMLR 2024, Fig. 1): fit a PCA on the patch
tokens of several images together, threshold the first component to separate foreground from
background, fit a second PCA on the foreground patches only and show its first three
components as RGB, background black. k-means on the L2-normalised patch tokens gives K
segments shared across the images (the same colour is the same cluster in every image).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import Tensor

from dino_mx.models.backbone import Backbone


@torch.no_grad()
def patch_features(backbone: Backbone, images: Tensor) -> Tensor:
    """Patch tokens on their grid.

    Args:
        backbone: Maps (B, C, H, W) to ``(cls, patches (B, N, D))``.
        images: (B, C, H, W) normalised images, H and W multiples of the patch size.

    Returns:
        (B, H / p, W / p, D) float32 CPU features.
    """
    p = backbone.patch_size
    _, patches = backbone(images)  # (B, N, D)
    h, w = images.shape[-2] // p, images.shape[-1] // p
    return patches.float().cpu().reshape(patches.shape[0], h, w, -1)  # N = h * w, row-major


def _minmax(x: np.ndarray) -> np.ndarray:
    """Scale each column to [0, 1]."""
    low, high = x.min(0, keepdims=True), x.max(0, keepdims=True)
    return (x - low) / np.maximum(high - low, 1e-12)


def foreground(features: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground patches from the first principal component.

    The component's sign is arbitrary, so it is oriented to be lower on the border patches
    than on average (the border is mostly background); patches whose min-max scaled value
    exceeds ``threshold`` are foreground.

    Args:
        features: (B, h, w, D) patch features.
        threshold: In [0, 1]; 0 keeps (almost) every patch.

    Returns:
        Boolean (B, h, w).
    """
    b, h, w, d = features.shape
    first = PCA(n_components=1).fit_transform(features.reshape(-1, d))[:, 0].reshape(b, h, w)
    border = np.ones((h, w), dtype=bool)
    border[1:-1, 1:-1] = False
    if first[:, border].mean() > first.mean():
        first = -first
    scaled = _minmax(first.reshape(-1, 1)).reshape(b, h, w)
    return scaled > threshold


def pca_rgb(
    features: Tensor | np.ndarray, threshold: float | None = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """First three principal components of the foreground patches as RGB.

    Args:
        features: (B, h, w, D) patch features of B images, fitted jointly.
        threshold: Background threshold on the first component (:func:`foreground`); None keeps
            every patch.

    Returns:
        ``rgb`` (B, h, w, 3) float in [0, 1] (background 0) and the foreground mask (B, h, w).
    """
    x = np.asarray(features, dtype=np.float64)
    b, h, w, d = x.shape
    mask = np.ones((b, h, w), bool) if threshold is None else foreground(x, threshold)
    if mask.sum() < 3:  # too few patches for three components: keep them all
        mask = np.ones((b, h, w), bool)
    fg = x[mask]  # (n_fg, D)
    n = min(3, fg.shape[0], d)
    components = _minmax(PCA(n_components=n).fit_transform(fg))  # (n_fg, n)
    rgb = np.zeros((b, h, w, 3))
    rgb[mask, :n] = components
    return rgb, mask


def kmeans_segments(features: Tensor | np.ndarray, k: int = 4, seed: int = 0) -> np.ndarray:
    """k-means clusters of L2-normalised patch features, shared across the images.

    Args:
        features: (B, h, w, D) patch features.
        k: Number of clusters.
        seed: k-means initialisation seed.

    Returns:
        (B, h, w) int cluster ids in [0, k).
    """
    x = np.asarray(features, dtype=np.float64)
    b, h, w, d = x.shape
    flat = x.reshape(-1, d)
    flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    if k < 1 or k > flat.shape[0]:
        raise ValueError(f"k must be in [1, {flat.shape[0]}] (the number of patches), got {k}")
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(flat)
    return labels.reshape(b, h, w)
