"""Statistics of the training latents the world model is built around: the per-channel change scale (`motion`) and
the PCA whitening of the tokens (`whiten`). Measured once on the training set and handed to the predictor."""
from __future__ import annotations

import torch


def change_std(latents: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """Per-channel std of one step's latent change over episodes [E, T, N, D], floored at `floor` x the median
    channel's (a channel that barely moves must not be blown up into noise)."""
    std = (latents[:, 1:].float() - latents[:, :-1].float()).flatten(0, 2).std(0)
    return std.clamp_min(floor * std.median())


def whitening(latents: torch.Tensor, floor: float = 1e-3, max_tokens: int = 200_000, dims: int = 0):
    """PCA whitening of the tokens [E, T, N, D] (at most max_tokens of them, drawn with a fixed seed): (mean,
    whitener [D, K], unwhitener [K, D]) with (z - mean) @ whitener of unit variance in every principal direction whose
    eigenvalue is above `floor` x their mean (those below are scaled as if at the floor: noise is not blown up),
    and unwhitener its inverse on those directions. dims > 0 keeps the top `dims` directions (K = dims), else all
    (K = D)."""
    tokens = latents.float().flatten(0, 2)
    tokens = tokens[torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))[:max_tokens]]
    mean = tokens.mean(0)
    eig, vec = torch.linalg.eigh(torch.cov((tokens - mean).T.double()))  # ascending
    eig = eig.clamp_min(floor * eig.mean())
    if dims:
        eig, vec = eig[-dims:], vec[:, -dims:]
    return mean, (vec / eig.sqrt()).float(), (vec * eig.sqrt()).T.float()
