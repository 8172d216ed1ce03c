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

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from dino_mx.config import AugmentConfig
from dino_mx.data.crop_recipe import CropRecipe, MultiCropBackend, View, ViewSpec, blur_kernel


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


class MultiCrop(MultiCropBackend):
    """Image -> list of crops ``[global_1, global_2, local_1, ..., local_n]``.

    Args (see :class:`~dino_mx.data.crop_recipe.MultiCropBackend`): ``channels``, ``mean``,
    ``std`` and ``recipe``. The colour jitter is ``v2.ColorJitter`` for C = 1 or 3 and
    :class:`ChannelJitter` for other C.

    Returns (from ``__call__``): float tensors, globals (C, global_size, global_size) then
    locals (C, local_size, local_size).
    """

    def _make_views(self, mean: list[float], std: list[float]) -> tuple[View, View, View]:
        shared = [*_flips(self.recipe), *_colour(self.recipe, self.channels)]
        to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        global_1, global_2, local = (_view(spec, shared, to_float) for spec in self.recipe.views())
        return global_1, global_2, local

    def __call__(self, image: Tensor) -> list[Tensor]:
        # plain tensors: no tv_tensor dispatch
        return [c.as_subclass(Tensor) for c in self._crops(image)]


def _flips(recipe: CropRecipe) -> list[v2.Transform]:
    flips: list[v2.Transform] = []
    if recipe.hflip > 0:
        flips.append(v2.RandomHorizontalFlip(recipe.hflip))
    if recipe.vflip > 0:
        flips.append(v2.RandomVerticalFlip(recipe.vflip))
    return flips


def _colour(recipe: CropRecipe, channels: int) -> list[v2.Transform]:
    """Colour jitter (randomly applied) and random grayscale, as far as ``channels`` allow."""
    r, rgb = recipe, channels == 3
    colour: list[v2.Transform] = []
    if r.color_jitter > 0:
        jitter: nn.Module = (
            v2.ColorJitter(
                brightness=r.brightness,
                contrast=r.contrast,
                saturation=r.saturation if rgb else 0.0,
                hue=r.hue if rgb else 0.0,
            )
            if channels in (1, 3)  # torchvision's brightness/contrast refuse other counts
            else ChannelJitter(r.brightness, r.contrast)
        )
        colour.append(v2.RandomApply([jitter], p=r.color_jitter))
    if rgb and r.grayscale > 0:
        colour.append(v2.RandomGrayscale(r.grayscale))
    return colour


def _view(spec: ViewSpec, shared: list[v2.Transform], to_float: list[v2.Transform]) -> v2.Compose:
    """Crop, then the flips and colour shared by every view, blur, solarise, to float."""
    ops: list[v2.Transform] = [
        v2.RandomResizedCrop(spec.size, scale=tuple(spec.scale), antialias=True),
        *shared,
    ]
    if spec.p_blur > 0:
        blur_op = v2.GaussianBlur(blur_kernel(spec.size), sigma=(0.1, 2.0))
        ops.append(v2.RandomApply([blur_op], p=spec.p_blur))
    if spec.p_solarize > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=spec.p_solarize))  # on uint8
    return v2.Compose(ops + to_float)


def build_multicrop(
    cfg: AugmentConfig, channels: int, mean: Sequence[float], std: Sequence[float]
) -> MultiCrop:
    """Builder: the ``augment`` config group to a :class:`MultiCrop`."""
    return MultiCrop(channels, mean, std, CropRecipe.from_config(cfg))
