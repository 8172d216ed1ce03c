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
from dino_mx.data.multicrop import blur_kernel, check_multicrop_arguments, multicrop_arguments


class BatchMultiCrop(nn.Module):
    """uint8 batch ``(B, C, H, W)`` -> ``[global_1, global_2, local_1, ..., local_n]``.

    Takes the arguments of :class:`~dino_mx.data.MultiCrop` (same meaning and defaults), so the
    ``augment`` config drives either. Every image of the batch gets its own crop, flip and
    colour parameters; under ``torch.manual_seed`` the output is a function of the seed.

    Returns (from ``forward``): float tensors normalised with ``mean``/``std``, globals
    (B, C, global_size, global_size) then locals (B, C, local_size, local_size).
    """

    def __init__(
        self,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        global_size: int = 224,
        local_size: int = 96,
        n_local: int = 8,
        global_scale: Sequence[float] = (0.32, 1.0),
        local_scale: Sequence[float] = (0.05, 0.32),
        hflip: float = 0.5,
        vflip: float = 0.0,
        color_jitter: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        grayscale: float = 0.2,
        blur: Sequence[float] = (1.0, 0.1, 0.5),
        solarize: float = 0.2,
    ):
        super().__init__()
        colour_only = {"saturation": saturation, "hue": hue, "grayscale": grayscale}
        mean, std = check_multicrop_arguments(channels, mean, std, blur, colour_only)
        self.channels = channels
        self.n_local = n_local
        rgb = channels == 3

        def view(size: int, scale: Sequence[float], p_blur: float, p_solar: float) -> nn.Module:
            ops: list[nn.Module] = [
                K.RandomResizedCrop((size, size), scale=(float(scale[0]), float(scale[1])))
            ]
            if hflip > 0:
                ops.append(K.RandomHorizontalFlip(p=hflip))
            if vflip > 0:
                ops.append(K.RandomVerticalFlip(p=vflip))
            if color_jitter > 0:
                ops.append(
                    K.ColorJitter(
                        brightness,
                        contrast,
                        saturation if rgb else 0.0,
                        hue if rgb else 0.0,
                        p=color_jitter,
                    )
                )
            if rgb and grayscale > 0:
                ops.append(K.RandomGrayscale(p=grayscale))
            if p_blur > 0:
                kernel = blur_kernel(size)
                ops.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=p_blur))
            if p_solar > 0:  # threshold fixed at 0.5, as torchvision's 128 on uint8
                ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=p_solar))
            ops.append(K.Normalize(torch.tensor(mean), torch.tensor(std)))
            return nn.Sequential(*ops)

        self.global_1 = view(global_size, global_scale, blur[0], 0.0)
        self.global_2 = view(global_size, global_scale, blur[1], solarize)
        self.local = view(local_size, local_scale, blur[2], 0.0)

    @property
    def n_views(self) -> int:
        return 2 + self.n_local

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, C, H, W) uint8 images -> ``2 + n_local`` float views, globals first."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"expected a (B, {self.channels}, H, W) batch of images, got {tuple(images.shape)}"
            )
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images (0-255), got {images.dtype}")
        x = images.float().div_(255)  # (B, C, H, W) in [0, 1], as kornia expects
        crops = [self.global_1(x), self.global_2(x)]
        crops += [self.local(x) for _ in range(self.n_local)]
        return crops


class RawImage:
    """The per-sample transform of ``augment.backend=batched``: ``image -> [image]``.

    The loader only collates the uint8 images (one crop "view" of shape (C, H, W)); the trainer
    augments the batch with :class:`BatchMultiCrop`. A list keeps the batch in the shape every
    method expects of per-sample crops, so DINOv2's masks can still be added per sample.
    """

    def __call__(self, image: Tensor) -> list[Tensor]:
        return [image.as_subclass(Tensor)]


def build_batch_multicrop(
    cfg: AugmentConfig, channels: int, mean: Sequence[float], std: Sequence[float]
) -> BatchMultiCrop:
    """Builder: the ``augment`` config group to a :class:`BatchMultiCrop`."""
    return BatchMultiCrop(channels, mean, std, **multicrop_arguments(cfg))
