"""Collapse monitors on a batch of embeddings [B, D]: RankMe effective rank and per-dimension std."""
from __future__ import annotations

import torch


@torch.no_grad()
def rankme(z: torch.Tensor, eps: float = 1e-7, center: bool = False) -> float:
    """exp(entropy of the normalised singular values) (Garrido et al., 2023): 1 for a collapsed batch,
    up to min(B, D) for full-rank embeddings. center=True first removes the batch mean: average-pooled ViT
    features share one large mean direction (uncentred RankMe ~1.7 for random and trained encoders alike), so only
    the centred value tells a collapsing encoder from a healthy one."""
    z = z.float()
    s = torch.linalg.svdvals(z - z.mean(0) if center else z)
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def feature_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the std across the batch of L2-normalised embeddings: ~1/sqrt(D) when
    spread out, ~0 when every sample maps to the same point."""
    z = torch.nn.functional.normalize(z.float(), dim=-1)
    return float(z.std(dim=0).mean())
