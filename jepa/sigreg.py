"""SIGReg (LeJEPA, Balestriero & LeCun 2025): push embeddings towards an isotropic Gaussian by testing random 1-D
projections of them against N(0, 1) with the Epps-Pulley statistic.

For each of `num_slices` random unit directions the embeddings [N, D] are projected to N numbers; the statistic is
N * integral over t of |empirical characteristic function(t) - exp(-t^2 / 2)|^2 * exp(-t^2 / 2), integrated with the
trapezoid rule on 17 points of [0, 3] (the integrand is even, so the weights are doubled), and averaged over slices.
It is ~0 for Gaussian samples and grows with N for anything else (a collapsed batch scores highest).
"""
from __future__ import annotations

import torch


def epps_pulley(x: torch.Tensor, t_max: float = 3.0, n_points: int = 17) -> torch.Tensor:
    """x: [N, K] samples of K univariate distributions -> [K] Epps-Pulley statistics against N(0, 1)."""
    t = torch.linspace(0.0, t_max, n_points, device=x.device, dtype=x.dtype)
    phi = torch.exp(-0.5 * t * t)
    dt = t_max / (n_points - 1)
    weights = torch.full_like(t, 2 * dt)
    weights[0] = weights[-1] = dt
    xt = x.unsqueeze(-1) * t                       # [N, K, P]
    err = (xt.cos().mean(0) - phi).square() + xt.sin().mean(0).square()   # [K, P]
    return x.shape[0] * (err @ (weights * phi))


def sigreg(z: torch.Tensor, num_slices: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean Epps-Pulley statistic of z [N, D] along `num_slices` random unit directions (drawn from `generator`)."""
    directions = torch.randn(z.shape[1], num_slices, generator=generator)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(device=z.device, dtype=torch.float32)
    return epps_pulley(z.float() @ directions).mean()
