"""Token selection by index: the one operation that turns a mask into fewer tokens."""
from __future__ import annotations

import torch


def apply_masks(x: torch.Tensor, masks: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Gather kept tokens.

    x: [B, N, D]; masks: one [B, K] index tensor, or a list of them. A list returns the gathered
    tokens of each mask concatenated along the batch (mask-major: all of mask 0, then mask 1, ...),
    which is how every target block becomes its own batch entry.
    """
    if isinstance(masks, torch.Tensor):
        masks = [masks]
    out = [torch.gather(x, 1, m.unsqueeze(-1).expand(-1, -1, x.size(-1))) for m in masks]
    return torch.cat(out, dim=0)


def repeat_batch(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """[B, ...] -> [repeats * B, ...] in the same mask-major order as apply_masks with a list."""
    return x.repeat(repeats, *([1] * (x.dim() - 1)))
