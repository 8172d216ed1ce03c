"""DINO multi-crop augmentation with torchvision transforms v2.

Two global crops and ``n_local`` smaller local crops of one image. Every photometric transform
is switchable, so the ``medical`` preset can drop the colour distortions that make no sense for
grey radiographs or stained slides. The transform works on a ``(C, H, W)`` uint8 tensor with
any C >= 1. Saturation, hue and random grayscale are RGB concepts: they apply only when C = 3
and are skipped otherwise (one log line says so). Crops, flips, brightness, contrast, blur,
solarisation and normalisation are channel-agnostic: for C = 1 and 3 the jitter is torchvision's
``ColorJitter``; for other C it is :class:`ChannelJitter`, the same brightness and contrast
formulas with the contrast mean taken over all channels (kornia's rule, so both backends agree).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from dino_mx.config import AugmentConfig
from dino_mx.data.channels import check_channels, per_channel

log = logging.getLogger(__name__)


def blur_kernel(size: int) -> int:
    """An odd kernel of about a tenth of the crop, as DINO's 23 px at 224 px."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def check_multicrop_arguments(
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    blur: Sequence[float],
    colour: dict[str, float] | None = None,
) -> tuple[list[float], list[float]]:
    """Validate the arguments both multi-crop paths share; returns per-channel mean and std.

    ``colour`` maps the RGB-only options (``saturation``, ``hue``, ``grayscale``) to their
    values: when C != 3 the non-zero ones are logged as skipped.
    """
    check_channels(channels, "channels")
    if len(blur) != 3:
        raise ValueError(f"blur needs 3 probabilities (global 1, global 2, local), got {blur}")
    skipped = [f"augment.{k}={v}" for k, v in (colour or {}).items() if v > 0]
    if channels != 3 and skipped:
        log.info("%d-channel images: %s skipped (RGB only)", channels, ", ".join(skipped))
    return per_channel(mean, std, channels)


def _blend(image: Tensor, other: Tensor | None, ratio: float) -> Tensor:
    """``ratio * image + (1 - ratio) * other`` (``other`` None: 0) clamped to the dtype's
    range, computed as torchvision's ``_blend`` (uint8 results truncated, as there)."""
    fp = image.is_floating_point()
    out = image.mul(ratio)  # float for uint8 input
    if other is not None:
        out = out.add_(other, alpha=1.0 - ratio)
    out = out.clamp_(0, 1.0 if fp else 255.0)
    return out if fp else out.to(image.dtype)


class ChannelJitter(nn.Module):
    """Brightness and contrast jitter for images of any channel count, in random order.

    Both factors are drawn as ``v2.ColorJitter`` draws them, uniform in
    ``[max(0, 1 - x), 1 + x]``. Brightness scales every channel by the same factor ``b``;
    contrast blends each pixel with the mean ``m`` of the image over all channels and pixels:
    ``c * x + (1 - c) * m`` (torchvision's formula for C = 1, kornia's ``ColorJitter`` for
    C != 3). Hue and saturation have no meaning without RGB and are not offered.

    Args:
        brightness, contrast: Jitter strengths (0 disables one).
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4):
        super().__init__()
        self.brightness = (max(0.0, 1.0 - brightness), 1.0 + brightness) if brightness else None
        self.contrast = (max(0.0, 1.0 - contrast), 1.0 + contrast) if contrast else None

    @staticmethod
    def adjust_brightness(image: Tensor, factor: float) -> Tensor:
        """(..., C, H, W) image with every channel scaled by ``factor``."""
        return _blend(image, None, factor)

    @staticmethod
    def adjust_contrast(image: Tensor, factor: float) -> Tensor:
        """(..., C, H, W) image blended with its mean over channels and pixels."""
        x = image if image.is_floating_point() else image.float()
        mean = x.mean(dim=(-3, -2, -1), keepdim=True)  # (..., 1, 1, 1)
        return _blend(image, mean, factor)

    def forward(self, image: Tensor) -> Tensor:
        out = image.as_subclass(Tensor)
        for step in torch.randperm(2).tolist():
            bounds = self.brightness if step == 0 else self.contrast
            if bounds is None:
                continue
            factor = float(torch.empty(1).uniform_(*bounds))
            adjust = self.adjust_brightness if step == 0 else self.adjust_contrast
            out = adjust(out, factor)
        if isinstance(image, tv_tensors.TVTensor):
            return tv_tensors.wrap(out, like=image)
        return out


class MultiCrop:
    """Image -> list of crops ``[global_1, global_2, local_1, ..., local_n]``.

    Args:
        channels: Image channels, any C >= 1; saturation, hue and grayscale apply only when
            C = 3 (skipped otherwise, logged once), the other operations to every channel.
        mean, std: Normalisation per channel (one value is broadcast to every channel).
        global_size, local_size: Output side of global and local crops in pixels.
        n_local: Number of local crops (0 for global crops only).
        global_scale, local_scale: ``RandomResizedCrop`` area ranges.
        hflip, vflip: Flip probabilities.
        color_jitter: Probability of brightness/contrast(/saturation/hue) jitter; 0 disables.
            C = 1 or 3: ``v2.ColorJitter``; other C: :class:`ChannelJitter`.
        grayscale: Probability of converting an RGB crop to grey (kept 3-channel; C = 3 only).
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
        colour_only = {"saturation": saturation, "hue": hue, "grayscale": grayscale}
        mean, std = check_multicrop_arguments(channels, mean, std, blur, colour_only)
        self.n_local = n_local
        rgb = channels == 3

        flips: list[v2.Transform] = []
        if hflip > 0:
            flips.append(v2.RandomHorizontalFlip(hflip))
        if vflip > 0:
            flips.append(v2.RandomVerticalFlip(vflip))
        colour: list[v2.Transform] = []
        if color_jitter > 0:
            jitter: nn.Module = (
                v2.ColorJitter(
                    brightness=brightness,
                    contrast=contrast,
                    saturation=saturation if rgb else 0.0,
                    hue=hue if rgb else 0.0,
                )
                if channels in (1, 3)  # torchvision's brightness/contrast refuse other counts
                else ChannelJitter(brightness, contrast)
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
