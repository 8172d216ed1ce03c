"""DINO's multi-crop recipe: which crops, at which sizes, with which augmentations.

One frozen value, built once from the ``augment`` config by the builders and taken by both
backends — :class:`~dino_mx.data.MultiCrop` (per sample, torchvision) and
:class:`~dino_mx.data.BatchMultiCrop` (whole batches, kornia) — so the two read the same
parameters with the same meaning and defaults (DINO's, Caron et al. 2021, at 224 px).
:class:`MultiCropBackend` is what the two share: their constructor and the order of the crops.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from dino_mx.config import AugmentConfig
from dino_mx.data.channels import check_channels, per_channel

log = logging.getLogger(__name__)

RGB_ONLY = ("saturation", "hue", "grayscale")  # skipped, with one log line, when C != 3

# DINO's defaults (at 224 px) have one home, the ``augment`` schema: the recipe's defaults are
# read from it, so ``CropRecipe()`` and a config that leaves a key at its default agree.
_DINO = AugmentConfig()


def blur_kernel(size: int) -> int:
    """An odd kernel of about a tenth of the crop, as DINO's 23 px at 224 px."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


class ViewSpec(NamedTuple):
    """One kind of view: crop side, ``RandomResizedCrop`` area range, blur and solarise odds."""

    size: int
    scale: tuple[float, float]
    p_blur: float
    p_solarize: float


@dataclass(frozen=True)
class CropRecipe:
    """Two global crops and ``n_local`` local crops of one image, and their augmentations.

    Attributes:
        global_size, local_size: Output side of global and local crops in pixels.
        n_local: Number of local crops (0 for global crops only).
        global_scale, local_scale: ``RandomResizedCrop`` area ranges.
        hflip, vflip: Flip probabilities.
        color_jitter: Probability of brightness/contrast(/saturation/hue) jitter; 0 disables.
        brightness, contrast, saturation, hue: Jitter strengths (saturation and hue: RGB only).
        grayscale: Probability of converting an RGB crop to grey (kept 3-channel; C = 3 only).
        blur: Gaussian-blur probability for global crop 1, global crop 2 and local crops.
        solarize: Solarisation probability of the second global crop.

    The defaults are the ``augment`` schema's (:class:`~dino_mx.config.AugmentConfig`).
    """

    global_size: int = _DINO.global_size
    local_size: int = _DINO.local_size
    n_local: int = _DINO.n_local
    global_scale: tuple[float, float] = tuple(_DINO.global_scale)
    local_scale: tuple[float, float] = tuple(_DINO.local_scale)
    hflip: float = _DINO.hflip
    vflip: float = _DINO.vflip
    color_jitter: float = _DINO.color_jitter
    brightness: float = _DINO.brightness
    contrast: float = _DINO.contrast
    saturation: float = _DINO.saturation
    hue: float = _DINO.hue
    grayscale: float = _DINO.grayscale
    blur: tuple[float, float, float] = tuple(_DINO.blur)
    solarize: float = _DINO.solarize

    def __post_init__(self) -> None:
        # Sequences from a config (ListConfig) or a caller (list) become tuples: hashable, and
        # the same values the crops will draw from.
        for name in ("global_scale", "local_scale", "blur"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.blur) != 3:
            raise ValueError(
                f"blur needs 3 probabilities (global 1, global 2, local), got {list(self.blur)}"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any) -> CropRecipe:
        """Builder: the recipe's keys of the ``augment`` config (other keys are not its own)."""
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls)})

    @property
    def n_views(self) -> int:
        return 2 + self.n_local

    def views(self) -> tuple[ViewSpec, ViewSpec, ViewSpec]:
        """Global crop 1, global crop 2 (the only one solarised) and the local crops."""
        g, loc = (self.global_size, self.global_scale), (self.local_size, self.local_scale)
        return (
            ViewSpec(*g, self.blur[0], 0.0),
            ViewSpec(*g, self.blur[1], self.solarize),
            ViewSpec(*loc, self.blur[2], 0.0),
        )

    def normalisation(
        self, channels: int, mean: Sequence[float], std: Sequence[float]
    ) -> tuple[list[float], list[float]]:
        """Check ``channels`` and return per-channel ``mean`` and ``std``; for C != 3, log the
        RGB-only augmentations the recipe asks for and that will be skipped."""
        check_channels(channels, "channels")
        skipped = [f"augment.{k}={getattr(self, k)}" for k in RGB_ONLY if getattr(self, k) > 0]
        if channels != 3 and skipped:
            log.info("%d-channel images: %s skipped (RGB only)", channels, ", ".join(skipped))
        return per_channel(mean, std, channels)


View = Callable[[Tensor], Tensor]  # one kind of view's pipeline: image(s) -> crop(s)


class MultiCropBackend:
    """What both multi-crop backends share: built from ``(channels, mean, std, recipe)``, they
    make the recipe's three kinds of view, ``2 + n_local`` crops of each image.

    One constructor, so the per-sample and the batched backend take the same arguments and
    check and broadcast them alike; a backend supplies :meth:`_make_views`, its pipelines.

    Args:
        channels: Image channels, any C >= 1; saturation, hue and grayscale apply only when
            C = 3 (skipped otherwise, logged once), the other operations to every channel.
        mean, std: Normalisation per channel (one value is broadcast to every channel).
        recipe: The crops and their augmentations.
    """

    def __init__(
        self,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        recipe: CropRecipe = CropRecipe(),  # noqa: B008 - frozen: one shared default is safe
    ):
        super().__init__()  # nn.Module's, for the batched backend
        mean, std = recipe.normalisation(channels, mean, std)
        self.recipe = recipe
        self.channels = channels
        self.n_local = recipe.n_local
        self.global_1, self.global_2, self.local = self._make_views(mean, std)

    def _make_views(self, mean: list[float], std: list[float]) -> tuple[View, View, View]:
        """The pipelines of global crop 1, global crop 2 and the local crops, normalising
        with the per-channel ``mean`` and ``std``."""
        raise NotImplementedError

    @property
    def n_views(self) -> int:
        return self.recipe.n_views

    def _crops(self, images: Tensor) -> list[Tensor]:
        """Global crop 1, global crop 2, then ``n_local`` local crops, drawn in that order."""
        crops = [self.global_1(images), self.global_2(images)]
        crops += [self.local(images) for _ in range(self.n_local)]
        return crops
