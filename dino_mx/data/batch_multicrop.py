"""DINO multi-crop on whole batches of tensors, with kornia: ``augment.backend=batched``.

:class:`~dino_mx.data.MultiCrop` augments one image at a time in the loader workers; with 8-10
crops per image that is DINO's known data bottleneck (~6 ms per 64 px image for 8 crops on one
CPU core, ~16 ms with hue jitter). This module draws the same augmentations for a whole
``(B, C, H, W)`` batch in one call per view, on the device the batch lives on (a GPU, or the
training process on a CPU), from the per-sample parameters that kornia samples.

Differences from the per-sample path, all documented kornia behaviour: crops are resampled
bilinearly without antialiasing (DINO's crops are mostly upsampled; a local crop shrinks by at
most ~1.5x at the default scales), and the colour jitter applies brightness, contrast,
saturation and hue in a random order per batch rather than per image.

Any channel count C >= 1 works: saturation, hue and random grayscale apply only when C = 3 (as
in the per-sample path, skipped with one log line otherwise); kornia's brightness and contrast
take any C, contrast blending with the image's mean over all channels when C != 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from dino_mx.config import AugmentConfig
from dino_mx.data.crop_recipe import CropRecipe, MultiCropBackend, View, ViewSpec, blur_kernel


class BatchMultiCrop(MultiCropBackend, nn.Module):
    """uint8 batch ``(B, C, H, W)`` -> ``[global_1, global_2, local_1, ..., local_n]``.

    Takes the arguments of :class:`~dino_mx.data.MultiCrop` (the same
    :class:`~dino_mx.data.CropRecipe`), so the ``augment`` config drives either. Every image of
    the batch gets its own crop, flip and colour parameters; under ``torch.manual_seed`` the
    output is a function of the seed.

    Returns (from ``forward``): float tensors normalised with ``mean``/``std``, globals
    (B, C, global_size, global_size) then locals (B, C, local_size, local_size).
    """

    def _make_views(self, mean: list[float], std: list[float]) -> tuple[View, View, View]:
        global_1, global_2, local = (
            _view(spec, self.recipe, self.channels, (mean, std)) for spec in self.recipe.views()
        )
        return global_1, global_2, local

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, C, H, W) uint8 images -> ``2 + n_local`` float views, globals first."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"expected a (B, {self.channels}, H, W) batch of images, got {tuple(images.shape)}"
            )
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images (0-255), got {images.dtype}")
        return self._crops(images.float().div_(255))  # (B, C, H, W) in [0, 1], as kornia expects


class RawImage:
    """The per-sample transform of ``augment.backend=batched``: ``image -> [image]``.

    The loader only collates the uint8 images (one crop "view" of shape (C, H, W)); the trainer
    augments the batch with :class:`BatchMultiCrop`. A list keeps the batch in the shape every
    method expects of per-sample crops, so DINOv2's masks can still be added per sample.
    """

    def __call__(self, image: Tensor) -> list[Tensor]:
        return [image.as_subclass(Tensor)]


def _view(
    spec: ViewSpec, r: CropRecipe, channels: int, stats: tuple[list[float], list[float]]
) -> nn.Sequential:
    """One view's kornia pipeline: crop, flips, colour, blur, solarise, normalise with
    ``stats`` (per-channel mean, std)."""
    rgb = channels == 3
    ops: list[nn.Module] = [
        K.RandomResizedCrop(
            (spec.size, spec.size), scale=(float(spec.scale[0]), float(spec.scale[1]))
        )
    ]
    if r.hflip > 0:
        ops.append(K.RandomHorizontalFlip(p=r.hflip))
    if r.vflip > 0:
        ops.append(K.RandomVerticalFlip(p=r.vflip))
    if r.color_jitter > 0:
        saturation, hue = (r.saturation, r.hue) if rgb else (0.0, 0.0)
        ops.append(K.ColorJitter(r.brightness, r.contrast, saturation, hue, p=r.color_jitter))
    if rgb and r.grayscale > 0:
        ops.append(K.RandomGrayscale(p=r.grayscale))
    if spec.p_blur > 0:
        kernel = blur_kernel(spec.size)
        ops.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=spec.p_blur))
    if spec.p_solarize > 0:  # threshold fixed at 0.5, as torchvision's 128 on uint8
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=spec.p_solarize))
    ops.append(K.Normalize(torch.tensor(stats[0]), torch.tensor(stats[1])))
    return nn.Sequential(*ops)


def build_batch_multicrop(
    cfg: AugmentConfig, channels: int, mean: Sequence[float], std: Sequence[float]
) -> BatchMultiCrop:
    """Builder: the ``augment`` config group to a :class:`BatchMultiCrop`."""
    return BatchMultiCrop(channels, mean, std, CropRecipe.from_config(cfg))
