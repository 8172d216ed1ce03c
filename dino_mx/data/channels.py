"""Channel counts: the conversions between them that have a rule, and per-channel statistics.

Images may have any number of channels C >= 1: grey radiographs (1), RGB photographs and
stained slides (3), fluorescence and multiplexed microscopy (4-6 and more). Two conversions have
a rule everyone agrees on: grey to C channels repeats the grey channel, RGB to grey takes the
ITU-R 601 luma (as PIL's ``convert("L")``). Any other (say 4 -> 3, or 3 -> 4) has none, so it
is an error that names ``data.channels`` rather than a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights of R, G, B


def check_channels(channels: int, key: str = "data.channels") -> None:
    """Raise ``ValueError`` naming ``key`` unless ``channels`` is an integer >= 1."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(
            f"{key} must be an integer >= 1 (or null: follow the data), got {channels!r}"
        )


def check_conversion(source: int, target: int, key: str = "data.channels") -> None:
    """Raise ``ValueError`` naming ``key`` when ``source``-channel images cannot become
    ``target``-channel ones: allowed are the identity, 1 -> C (repeat) and 3 -> 1 (luma)."""
    check_channels(target, key)
    if source == target or source == 1 or (source, target) == (3, 1):
        return
    raise ValueError(
        f"{key}={target} but the images have {source} channels: only grey -> C (repeat) and "
        f"RGB -> grey (luma) have a rule; set {key}=null (or {source}) to keep the data's channels"
    )


class ConvertChannels:
    """(C, H, W) image -> ``channels`` channels: grey repeated into every channel, RGB to grey
    by ITU-R 601 luma (rounded, as PIL's ``convert("L")``); the identity when C already matches.

    Args:
        channels: Output channel count, >= 1.
        source: Input channel count when known; the conversion is then checked at once
            instead of at the first image.
        key: The config key named by errors.

    Raises:
        ValueError: ``channels`` < 1, or a conversion without a rule (see
            :func:`check_conversion`), at construction when ``source`` is given, else on call.
    """

    def __init__(self, channels: int, source: int | None = None, key: str = "data.channels"):
        check_channels(channels, key)
        if source is not None:
            check_conversion(source, channels, key)
        self.channels = channels
        self.key = key

    def __call__(self, image: Tensor) -> Tensor:
        source = image.shape[-3]
        if source == self.channels:
            return image
        check_conversion(source, self.channels, self.key)
        if source == 1:
            return image.expand(*image.shape[:-3], self.channels, -1, -1).clone()
        weights = torch.tensor(LUMA).view(3, 1, 1)
        grey = (image.float() * weights).sum(-3, keepdim=True)  # (..., 1, H, W)
        if image.is_floating_point():
            return grey.to(image.dtype)
        return grey.round().clamp(0, 255).to(image.dtype)


def per_channel(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[list[float], list[float]]:
    """``data.mean``/``data.std`` as ``channels`` values each: a single value is broadcast.

    Raises:
        ValueError: A list whose length is neither 1 nor ``channels``; the message names the key
            and both lengths.
    """
    out = []
    for key, values in (("data.mean", list(mean)), ("data.std", list(std))):
        if len(values) not in (1, channels):
            raise ValueError(
                f"{key} has {len(values)} values {values} for {channels}-channel images: give 1 "
                f"(used for every channel) or {channels}"
            )
        out.append([float(v) for v in values] * (channels if len(values) == 1 else 1))
    return out[0], out[1]
