"""Fixed sin-cos position embeddings (MAE / I-JEPA convention: half the channels for each axis)."""
from __future__ import annotations

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
