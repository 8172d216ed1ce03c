"""DINO multi-crop augmentation with torchvision transforms v2.

Two global crops and ``n_local`` smaller local crops of one image. Every photometric transform
is switchable, so the ``medical`` preset can drop the colour distortions that make no sense for
grey radiographs or stained slides. The transform works on a ``(C, H, W)`` uint8 tensor with
C = 1 or 3; colour-only transforms (saturation, hue, grayscale) are skipped for 1 channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

from dino_mx.config import AugmentConfig


def blur_kernel(size: int) -> int:
    """An odd kernel of about a tenth of the crop, as DINO's 23 px at 224 px."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def check_multicrop_arguments(
    channels: int, mean: Sequence[float], std: Sequence[float], blur: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Validate the arguments both multi-crop paths share; returns per-channel mean and std."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if len(blur) != 3:
        raise ValueError(f"blur needs 3 probabilities (global 1, global 2, local), got {blur}")
    mean, std = list(mean), list(std)
    if len(mean) == 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std need 1 or {channels} values, got {mean} / {std}")
    return mean, std


class MultiCrop:
    """Image -> list of crops ``[global_1, global_2, local_1, ..., local_n]``.

    Args:
        channels: Image channels (1 or 3); decides which colour transforms apply.
        mean, std: Normalisation per channel (one value is broadcast to every channel).
        global_size, local_size: Output side of global and local crops in pixels.
        n_local: Number of local crops (0 for global crops only).
        global_scale, local_scale: ``RandomResizedCrop`` area ranges.
        hflip, vflip: Flip probabilities.
        color_jitter: Probability of brightness/contrast(/saturation/hue) jitter; 0 disables.
        grayscale: Probability of converting an RGB crop to grey (kept 3-channel).
        blur: Gaussian-blur probability for global crop 1, global crop 2 and local crops.
        solarize: Solarisation probability of the second global crop.

    Returns (from ``__call__``): float tensors, globals (C, global_size, global_size) then
    locals (C, local_size, local_size).
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
        mean, std = check_multicrop_arguments(channels, mean, std, blur)
        self.n_local = n_local
        rgb = channels == 3

        flips: list[v2.Transform] = []
        if hflip > 0:
            flips.append(v2.RandomHorizontalFlip(hflip))
        if vflip > 0:
            flips.append(v2.RandomVerticalFlip(vflip))
        colour: list[v2.Transform] = []
        if color_jitter > 0:
            jitter = v2.ColorJitter(
                brightness=brightness,
                contrast=contrast,
                saturation=saturation if rgb else 0.0,
                hue=hue if rgb else 0.0,
            )
            colour.append(v2.RandomApply([jitter], p=color_jitter))
        if rgb and grayscale > 0:
            colour.append(v2.RandomGrayscale(grayscale))
        to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]

        def view(size: int, scale: Sequence[float], p_blur: float, p_solar: float) -> v2.Compose:
            ops: list[v2.Transform] = [
                v2.RandomResizedCrop(size, scale=tuple(scale), antialias=True),
                *flips,
                *colour,
            ]
            if p_blur > 0:
                blur_op = v2.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))
                ops.append(v2.RandomApply([blur_op], p=p_blur))
            if p_solar > 0:
                ops.append(v2.RandomSolarize(threshold=128, p=p_solar))  # on uint8
            return v2.Compose(ops + to_float)

        self.global_1 = view(global_size, global_scale, blur[0], 0.0)
        self.global_2 = view(global_size, global_scale, blur[1], solarize)
        self.local = view(local_size, local_scale, blur[2], 0.0)

    @property
    def n_views(self) -> int:
        return 2 + self.n_local

    def __call__(self, image: Tensor) -> list[Tensor]:
        crops = [self.global_1(image), self.global_2(image)]
        crops += [self.local(image) for _ in range(self.n_local)]
        return [c.as_subclass(Tensor) for c in crops]  # plain tensors: no tv_tensor dispatch


def multicrop_arguments(cfg: AugmentConfig) -> dict[str, Any]:
    """The keyword arguments of :class:`MultiCrop` (and its batched twin) in ``cfg``."""
    names = (
        "global_size local_size n_local global_scale local_scale hflip vflip color_jitter "
        "brightness contrast saturation hue grayscale blur solarize"
    ).split()
    return {name: cfg[name] for name in names}


def build_multicrop(
    cfg: AugmentConfig, channels: int, mean: Sequence[float], std: Sequence[float]
) -> MultiCrop:
    """Builder: the ``augment`` config group to a :class:`MultiCrop`."""
    return MultiCrop(channels, mean, std, **multicrop_arguments(cfg))
