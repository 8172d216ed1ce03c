"""What the trainer's periodic evaluation shows (``trainer.eval_every``): a weighted k-NN of the
teacher's CLS features, val against train, and TensorBoard image grids of a few fixed val
images — the teacher's last-layer CLS attention (Caron et al., ICCV 2021) and the PCA of its
patch features (Oquab et al., TMLR 2024) — so the Images tab shows them evolve beside the curve.

The maths is :mod:`dino_mx.eval.attention` and :mod:`dino_mx.eval.patches`, the drawing
:mod:`dino_mx.eval.render`, as in ``dino-mx visualize``; this module only picks the images and
lays out the grids.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from torch import Tensor

from dino_mx.data import build_dataset
from dino_mx.eval import render
from dino_mx.eval.attention import cls_attention, upsample
from dino_mx.eval.features import eval_dataset, extract_features
from dino_mx.eval.knn import knn_evaluate
from dino_mx.eval.patches import patch_features, pca_rgb
from dino_mx.models.backbone import Backbone

TILE = 96  # target side of one grid tile in pixels
PAD = 2  # render.grid's padding between tiles
TITLE = 12  # render.grid's title line over the columns
MAX_HEADS = 4  # attention heads drawn beside the head mean; wider models show their first four


class ImageWriter(Protocol):
    """The part of ``torch.utils.tensorboard.SummaryWriter`` used here."""

    def add_image(
        self, tag: str, img_tensor: np.ndarray, global_step: int, *, dataformats: str
    ) -> None: ...


def evenly_spaced(length: int, n: int) -> np.ndarray:
    """``min(n, length)`` distinct indices spread evenly over ``range(length)``, first and last
    included: the same every call, as ``dino-mx visualize`` picks them."""
    return np.unique(np.linspace(0, length - 1, min(n, length)).round().astype(int))


def display_image(image: Tensor) -> np.ndarray:
    """A raw (C, H, W) uint8 image as (H, W, 3) uint8: grey and RGB as they are, any other
    channel count as the grey mean of its channels."""
    array = image.as_subclass(Tensor).permute(1, 2, 0).numpy()  # CHW -> HWC
    if array.shape[2] not in (1, 3):
        array = array.mean(2).round().astype(np.uint8)
    return render.to_rgb(array)


def tile_size(grid: int, target: int = TILE) -> int:
    """The multiple of the patch-grid side ``grid`` nearest ``target``, so every patch covers
    the same number of pixels."""
    return grid * max(1, round(target / grid))


def grid_shape(n_images: int, n_columns: int, tile: int) -> tuple[int, int]:
    """(height, width) in pixels of a :func:`render.grid` of ``n_images`` rows."""
    return TITLE + n_images * (tile + PAD) + PAD, n_columns * (tile + PAD) + PAD


def attention_grid(backbone: Backbone, images: Tensor, tiles: list[np.ndarray]) -> np.ndarray:
    """Per image (rows): the image, its head-mean CLS attention and up to :data:`MAX_HEADS`
    heads, each as an inferno heat map over the image.

    Args:
        backbone: The encoder, on the images' device.
        images: (B, C, H, W) normalised images.
        tiles: B (S, S, 3) uint8 images to draw on, S a multiple of the patch grid side.

    Returns:
        (TITLE + B * (S + PAD) + PAD, K * (S + PAD) + PAD, 3) uint8, K = 2 + min(heads, 4).
    """
    maps = cls_attention(backbone, images).cpu()  # (B, heads, h, w)
    maps = torch.cat([maps.mean(1, keepdim=True), maps[:, :MAX_HEADS]], 1)  # head mean first
    side = tiles[0].shape[0]
    up = upsample(maps, (side, side)).numpy()  # (B, 1 + heads, S, S)
    rows = [
        [tile] + [render.blend(tile, render.heat_colors(m), 0.6) for m in up[i]]
        for i, tile in enumerate(tiles)
    ]
    heads = [f"head {h}" for h in range(maps.shape[1] - 1)]
    return np.asarray(render.grid(rows, ["image", "mean", *heads], PAD))


def pca_grid(
    backbone: Backbone, images: Tensor, tiles: list[np.ndarray], threshold: float | None = 0.5
) -> np.ndarray:
    """Per image (rows): the image and the first three principal components of its foreground
    patch features in RGB (background black), the PCA fitted on all B images together.

    Args:
        backbone: The encoder, on the images' device.
        images: (B, C, H, W) normalised images.
        tiles: B (S, S, 3) uint8 images, S a multiple of the patch grid side.
        threshold: Background threshold of :func:`dino_mx.eval.patches.pca_rgb`.

    Returns:
        (TITLE + B * (S + PAD) + PAD, 2 * (S + PAD) + PAD, 3) uint8.
    """
    rgb, _ = pca_rgb(patch_features(backbone, images), threshold)  # (B, h, w, 3) in [0, 1]
    side = tiles[0].shape[0]
    pca = [render.resize((c * 255).round().astype(np.uint8), side, nearest=True) for c in rgb]
    return np.asarray(render.grid([[t, p] for t, p in zip(tiles, pca)], ["image", "PCA"], PAD))


class ValMonitor:
    """The periodic evaluation of a training run on its data's val split.

    Args:
        data: The ``data`` config of the run.
        image_size: Side the images are resized to (the global-crop size).
        n_images: Val images in the TensorBoard grids, evenly spaced; 0 draws none.
    """

    def __init__(self, data: DictConfig, image_size: int, n_images: int = 8):
        self.data, self.image_size, self.n_images = data, image_size, n_images
        self._knn_data: list | None = None
        self._images: tuple[Tensor, list[np.ndarray]] | None = None

    @torch.no_grad()
    def knn(self, backbone: Backbone, device: torch.device, k: int = 20) -> dict[str, float]:
        """Weighted k-NN accuracy and friends of the CLS features, val against train.

        Cheap enough to watch learning as it happens; the full protocol is ``dino-mx eval``.
        """
        if self._knn_data is None:
            self._knn_data = [eval_dataset(self.data, s, self.image_size) for s in ("train", "val")]
        (train_x, train_y), (val_x, val_y) = (
            extract_features(backbone, d, device=device) for d in self._knn_data
        )
        metrics = knn_evaluate(train_x, train_y, val_x, val_y, ks=(k,))[k]
        return {f"knn/val_{name}_k{k}": value for name, value in metrics.items()}

    def fixed_images(self) -> tuple[Tensor, list[np.ndarray]]:
        """The ``n_images`` val images: (n, C, S, S) normalised for the model, and each as an
        (S, S, 3) uint8 picture (loaded once, the same every call)."""
        if self._images is None:
            dataset = eval_dataset(self.data, "val", self.image_size)
            raw = build_dataset(self.data, "val")
            indices = evenly_spaced(len(dataset), self.n_images)  # type: ignore[arg-type]
            images = torch.stack([dataset[int(i)][0].as_subclass(Tensor) for i in indices])
            pictures = [display_image(raw[int(i)][0]) for i in indices]
            self._images = images, pictures
        return self._images

    @torch.no_grad()
    def images(self, backbone: Backbone, device: torch.device) -> dict[str, np.ndarray]:
        """``val/attention`` and ``val/pca`` grids, (H, W, 3) uint8, of the fixed images; empty
        when ``n_images`` is 0. ``backbone`` is put in eval mode."""
        if self.n_images <= 0:
            return {}
        images, pictures = self.fixed_images()
        backbone.eval()
        images = images.to(device)
        side = tile_size(self.image_size // backbone.patch_size)
        tiles = [render.resize(p, side) for p in pictures]
        return {
            "val/attention": attention_grid(backbone, images, tiles),
            "val/pca": pca_grid(backbone, images, tiles),
        }

    def log_images(
        self, writer: ImageWriter, backbone: Backbone, step: int, device: torch.device
    ) -> None:
        """Add :meth:`images` to TensorBoard at ``step``."""
        for tag, grid in self.images(backbone, device).items():
            writer.add_image(tag, grid, step, dataformats="HWC")

    def __call__(self, backbone: Backbone, step: int, accelerator: Accelerator) -> dict[str, float]:
        """The trainer's periodic evaluation (main process): the k-NN scalars, logged with the
        image grids to the run's trackers at ``step``; returns the scalars."""
        knn = self.knn(backbone, accelerator.device)
        accelerator.log(knn, step=step)
        writer = accelerator.get_tracker("tensorboard", unwrap=True)
        self.log_images(writer, backbone, step, accelerator.device)
        return knn


def build_monitor(cfg: DictConfig) -> ValMonitor | None:
    """Builder: ``trainer.eval_every`` > 0 to the run's :class:`ValMonitor`, else None."""
    if cfg.trainer.eval_every <= 0:
        return None
    return ValMonitor(cfg.data, cfg.augment.global_size, cfg.trainer.tb_images)
