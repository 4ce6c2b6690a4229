"""The multi-view term (LeJEPA's objective) that an I-JEPA run may add: augmented views of one image embedded whole by
the context encoder, average-pooled and projected, pulled to their mean (invariance) while SIGReg keeps the
projections an isotropic Gaussian (no collapse). The I-JEPA loss trains each patch's embedding; this term trains the
pooled vector that the standard probe reads."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import MLP

from jepa.sigreg import sigreg


class ViewInvariance(nn.Module):
    """(1 - sigreg_share) x invariance + sigreg_share x SIGReg of the projected, pooled embeddings of V views.

    Args:
        embed_dim: the encoder's width.
        proj_dim: width of the projection the term acts on (the probe reads the encoder, not the projection).
        sigreg_share: LeJEPA's lambda, the share of SIGReg in the term (its paper's default 0.05).
        slices: random directions of SIGReg.
    """

    def __init__(self, embed_dim: int, proj_dim: int = 64, sigreg_share: float = 0.05, slices: int = 256) -> None:
        super().__init__()
        # BatchNorm between the layers as in LeJEPA's projector; the last layer is linear
        self.projector = MLP(embed_dim, [4 * embed_dim, proj_dim], norm_layer=nn.BatchNorm1d,
                             activation_layer=nn.GELU)
        self.sigreg_share, self.slices = sigreg_share, slices

    def forward(self, encoder: nn.Module, views: torch.Tensor, generator: torch.Generator,
                local: torch.Tensor | None = None) -> torch.Tensor:
        """views [B, V, C, H, W] (and local views [B, L, C, h, w]) -> the scalar term; `generator` draws SIGReg's
        directions. As in LeJEPA, every view is pulled to the mean of the (global) views' projections."""
        b, v = views.shape[:2]
        pooled = [encoder(views.flatten(0, 1)).mean(1).view(b, v, -1)]  # every token of every view
        if local is not None:
            pooled.append(encoder(local.flatten(0, 1)).mean(1).view(b, local.shape[1], -1))
        pooled = torch.cat(pooled, 1)
        n = pooled.shape[1]
        z = self.projector(pooled.flatten(0, 1).float()).view(b, n, -1)
        invariance = (z - z[:, :v].mean(1, keepdim=True)).square().mean()
        state = generator.get_state()
        reg = 0.0
        for i in range(n):  # the same directions for every view
            generator.set_state(state)
            reg = reg + sigreg(z[:, i], self.slices, generator)
        return (1 - self.sigreg_share) * invariance + self.sigreg_share * reg / n
