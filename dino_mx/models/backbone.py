"""Vision Transformer backbones from Hugging Face ``transformers``.

A backbone is either loaded with ``from_pretrained`` (a hub name such as
``facebook/dinov2-small`` or a local folder) or built at random from a size preset for CPU work.
Either way it is wrapped in :class:`Backbone`, which returns the CLS token and the patch tokens
and interpolates position embeddings, so local crops smaller than global ones just work.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    Dinov2Config,
    Dinov2Model,
    PreTrainedModel,
    ViTConfig,
    ViTModel,
)

from dino_mx.config import ModelConfig

ARCHS = ("vit", "dinov2")


class Backbone(nn.Module):
    """A Hugging Face ViT or DINOv2 encoder returning ``(cls, patches)``.

    Args:
        model: ``ViTModel`` or ``Dinov2Model`` (anything with ``last_hidden_state`` whose first
            token is CLS and whose config has ``hidden_size``, ``patch_size``, ``num_channels``).

    Masked-image modelling (iBOT, DINOv2) replaces some patch embeddings by a learned mask token
    before the encoder. ``Dinov2Model`` has its own token; ``ViTModel`` has one only when built
    with ``use_mask_token=True``, which DINO checkpoints are not. :meth:`enable_mask_token`
    gives the others a token of the wrapper (``Backbone.mask_token``), applied at the same
    place, so ``bool_masked_pos`` works with any backbone.
    """

    mask_token: nn.Parameter | None

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.embed_dim: int = model.config.hidden_size
        self.patch_size: int = model.config.patch_size
        self.num_channels: int = model.config.num_channels
        self._interpolate = isinstance(model, ViTModel)  # Dinov2Model always interpolates
        # Register tokens (DINOv2 with registers) sit between CLS and the patches.
        self.num_prefix_tokens = 1 + getattr(model.config, "num_register_tokens", 0)
        embeddings = getattr(model, "embeddings", None)
        self.has_native_mask_token = getattr(embeddings, "mask_token", None) is not None
        self.mask_token = None

    def enable_mask_token(self) -> None:
        """Make ``bool_masked_pos`` usable: a no-op for a model with its own mask token, else a
        learnable (1, 1, D) token of the wrapper, zero-initialised as HF and DINOv2 do."""
        if self.has_native_mask_token or self.mask_token is not None:
            return
        if not hasattr(getattr(self.model, "embeddings", None), "patch_embeddings"):
            raise ValueError(
                f"{type(self.model).__name__} has no embeddings.patch_embeddings to mask"
            )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))

    def forward(
        self, pixel_values: Tensor, bool_masked_pos: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encode images.

        Args:
            pixel_values: (B, C, H, W) normalised images; H and W multiples of the patch size.
            bool_masked_pos: Optional (B, N) mask of patches replaced by the mask token (the
                model's own, else the wrapper's: see :meth:`enable_mask_token`).

        Returns:
            ``cls`` (B, D) and ``patches`` (B, N, D), N = (H / p) * (W / p), after the final norm.
        """
        kwargs = {"interpolate_pos_encoding": True} if self._interpolate else {}
        if bool_masked_pos is None or self.has_native_mask_token:
            out = self.model(pixel_values=pixel_values, bool_masked_pos=bool_masked_pos, **kwargs)
        else:
            if self.mask_token is None:
                raise ValueError(
                    f"{type(self.model).__name__} has no mask token: call enable_mask_token() "
                    "before passing bool_masked_pos"
                )

            # Swap masked patch embeddings for the token before CLS and positions are added,
            # exactly where HF's own mask token goes.
            def mask_patches(module: nn.Module, args: tuple, patches: Tensor) -> Tensor:
                token = self.mask_token.to(patches.dtype)  # type: ignore[union-attr]
                return torch.where(bool_masked_pos.unsqueeze(-1), token, patches)  # (B, N, D)

            hook = self.model.embeddings.patch_embeddings.register_forward_hook(mask_patches)
            try:
                out = self.model(pixel_values=pixel_values, **kwargs)
            finally:
                hook.remove()
        tokens = out.last_hidden_state  # (B, prefix + N, D)
        return tokens[:, 0], tokens[:, self.num_prefix_tokens :]


def random_init_model(
    arch: str,
    *,
    num_channels: int,
    image_size: int,
    patch_size: int,
    hidden_size: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
    drop_path_rate: float = 0.0,
) -> PreTrainedModel:
    """Build an untrained ``ViTModel`` (arch ``vit``) or ``Dinov2Model`` (arch ``dinov2``)."""
    common = dict(
        hidden_size=hidden_size,
        num_hidden_layers=depth,
        num_attention_heads=num_heads,
        image_size=image_size,
        patch_size=patch_size,
        num_channels=num_channels,
    )
    if arch == "vit":
        config = ViTConfig(intermediate_size=int(hidden_size * mlp_ratio), **common)
        if drop_path_rate:
            raise ValueError("transformers' ViTModel has no drop path; use arch=dinov2 for it")
        return ViTModel(config, add_pooling_layer=False)
    if arch == "dinov2":
        if not float(mlp_ratio).is_integer():
            raise ValueError(f"Dinov2Config needs an integer mlp_ratio, got {mlp_ratio}")
        config = Dinov2Config(mlp_ratio=int(mlp_ratio), drop_path_rate=drop_path_rate, **common)
        return Dinov2Model(config)
    raise ValueError(f"unknown model.arch '{arch}'; valid choices: {', '.join(ARCHS)}")


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_pretrained_model(name_or_path: str, num_channels: int | None = None) -> PreTrainedModel:
    """``AutoModel.from_pretrained`` that fails fast offline and adapts the input channels.

    A hub name is looked up in the local cache first; when it is not there and the hub cannot be
    reached (``HF_HUB_OFFLINE=1`` or no network), the error says to pass a local folder instead of
    retrying for a minute. A pretrained RGB (or grey) model used on ``num_channels``-channel data
    gets its patch embedding adapted by :func:`adapt_input_channels`, and its config's
    ``num_channels`` follows.
    """
    local = Path(name_or_path).expanduser()
    kwargs: dict = {}
    if local.is_dir():
        source = str(local)
    else:
        source = name_or_path
        try:
            AutoConfig.from_pretrained(source, local_files_only=True)
            kwargs["local_files_only"] = True
        except OSError:
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
            if offline or not _hub_reachable():
                raise OSError(
                    f"cannot load '{name_or_path}': it is not a local folder, not in the Hugging "
                    "Face cache, and the hub is unreachable"
                    f"{' (HF_HUB_OFFLINE is set)' if offline else ''}. On a connected machine run "
                    f"`hf download {name_or_path} --local-dir DIR`, copy DIR here and "
                    "pass model.pretrained=DIR (or --model DIR)."
                ) from None
    config = AutoConfig.from_pretrained(source, **kwargs)
    if config.model_type == "vit":
        kwargs["add_pooling_layer"] = False  # DINO uses the CLS token, not the pooler
    model = AutoModel.from_pretrained(source, **kwargs)
    if num_channels is not None and num_channels != model.config.num_channels:
        adapt_input_channels(model, num_channels)
    return model


ADAPTABLE_CHANNELS = (1, 3)  # grey and RGB models: what pretrained checkpoints are


@torch.no_grad()
def adapt_input_channels(model: PreTrainedModel, num_channels: int) -> None:
    """Rebuild the patch embedding of a grey or RGB model for ``num_channels`` inputs, in place.

    Rule: every new filter is the mean of the model's filters scaled by ``C_in / C``, i.e.
    ``W'[:, c] = sum_k W[:, k] / C`` for each of the ``C`` new channels. For an RGB model that is
    the mean RGB filter repeated ``C`` times and scaled by ``3 / C``. A constant image (the
    same value in every channel) then gets exactly the embedding the original model gave the
    constant RGB (or grey) image, whatever ``C``; ``C = 1`` gives the sum of the RGB filters (the
    model on the grey image repeated in R, G and B), and a grey model on RGB data gets its filter
    split in three. The bias is kept. ``config.num_channels`` follows, so ``save_pretrained``
    writes a config that ``AutoModel.from_pretrained`` reloads with ``C`` channels.

    Args:
        model: A ``ViTModel`` / ``Dinov2Model`` (``embeddings.patch_embeddings.projection`` is a
            ``Conv2d`` of weight (D, C_in, p, p)) with C_in 1 or 3.
        num_channels: The new input channel count C >= 1.

    Raises:
        ValueError: C < 1, or a model of another channel count (say one trained here on
            4-channel data), whose channels carry specific stains or markers that no rule maps.
    """
    patch = model.embeddings.patch_embeddings
    conv: nn.Conv2d = patch.projection
    weight = conv.weight  # (D, C_in, p, p)
    source = weight.shape[1]
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    if source == num_channels:
        return
    if source not in ADAPTABLE_CHANNELS:
        raise ValueError(
            f"cannot adapt a {source}-channel patch embedding to {num_channels} channels: only "
            f"grey (1) or RGB (3) models adapt to another channel count"
        )
    new_weight = (weight.sum(dim=1, keepdim=True) / num_channels).repeat(1, num_channels, 1, 1)
    new_conv = nn.Conv2d(
        num_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=conv.bias is not None
    )
    new_conv.to(device=weight.device, dtype=weight.dtype)
    new_conv.weight.copy_(new_weight)  # (D, C, p, p)
    if conv.bias is not None:
        new_conv.bias.copy_(conv.bias)
    new_conv.requires_grad_(weight.requires_grad)
    patch.projection = new_conv
    patch.num_channels = num_channels
    model.config.num_channels = num_channels


def build_backbone(cfg: ModelConfig, num_channels: int) -> Backbone:
    """Builder: the ``model`` config group to a :class:`Backbone` with ``num_channels`` inputs."""
    if cfg.pretrained:
        return Backbone(load_pretrained_model(cfg.pretrained, num_channels))
    model = random_init_model(
        cfg.arch,
        num_channels=num_channels,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        drop_path_rate=cfg.drop_path_rate,
    )
    return Backbone(model)


def build_seeded_backbone(cfg: ModelConfig, num_channels: int, seed: int = 0) -> Backbone:
    """:func:`build_backbone` frozen, with a random init drawn from ``seed`` in a forked RNG, so
    every call gives the same weights and the caller's random stream is left as it was.

    What evaluation compares a trained network with (a preset never trained here, or
    ``pretrained``) and what a distillation test uses as its teacher.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(cfg, num_channels)
    return backbone.eval().requires_grad_(False)
