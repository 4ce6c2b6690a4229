"""Fixed sin-cos position embeddings: 2-D (MAE / I-JEPA convention: half the channels for each axis) and 3-D
(V-JEPA convention: time, then rows, then columns)."""
from __future__ import annotations

import math

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[..., ] positions -> [..., dim]: sin in the first half, cos in the second, omega = 1 / 10000^(2i/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.to(torch.float64)[..., None] * omega
    return torch.cat([out.sin(), out.cos()], dim=-1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """[grid_h * grid_w, dim], row-major; the first half of the channels encodes the column (w), the second the row."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=-1)
    return emb.float()


def sincos_3d(dim: int, grid_t: int, grid_h: int, grid_w: int, uniform_power: bool = False) -> torch.Tensor:
    """[grid_t * grid_h * grid_w, dim], ordered (t, h, w) row-major; channels [time | rows | columns].

    Default split: half the channels for time, a quarter each for rows and columns. uniform_power=True (the
    official V-JEPA pretraining configs) gives each axis the same 2 * ceil(dim / 6) channels, truncated to dim."""
    if uniform_power:
        dt = dh = dw = 2 * math.ceil(dim / 6)
    else:
        if dim % 4:
            raise ValueError(f"3-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
        dt, dh, dw = dim // 2, dim // 4, dim // 4
    if dh % 2 or dt % 2:
        raise ValueError(f"3-D sin-cos embedding: dimension {dim} gives odd per-axis widths")
    t, h, w = torch.meshgrid(torch.arange(grid_t), torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    emb = torch.cat([sincos_1d(dt, t.flatten()), sincos_1d(dh, h.flatten()), sincos_1d(dw, w.flatten())], dim=-1)
    return emb[:, :dim].float()
