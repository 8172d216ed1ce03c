"""DINO projection head: MLP -> bottleneck -> L2 norm -> weight-normalised prototypes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from dino_mx.config import HeadConfig


class DINOHead(nn.Module):
    """Projects backbone features onto ``out_dim`` prototypes (Caron et al., 2021).

    Args:
        in_dim: Backbone feature width D.
        out_dim: Number of prototypes K.
        hidden_dim: Width of the hidden MLP layers.
        bottleneck_dim: Width of the L2-normalised bottleneck.
        nlayers: Number of MLP layers (>= 1).
        norm_last_layer: Fix the prototypes' weight-norm gain to 1. DINO keeps this True for
            stability with ViT-S; False trains faster but can be unstable.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be >= 1, got {nlayers}")
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0  # (K, 1)
        gain.data.fill_(1.0)
        gain.requires_grad_(not norm_last_layer)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) features -> (B, K) prototype logits."""
        x = F.normalize(self.mlp(x), dim=-1, p=2)  # (B, bottleneck)
        return self.last_layer(x)


def build_head(cfg: HeadConfig, in_dim: int) -> DINOHead:
    """Builder: a ``method.head`` (or ``method.ibot.head``) config to a :class:`DINOHead`."""
    return DINOHead(
        in_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.nlayers, cfg.norm_last_layer
    )
