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


def slot_means(x: torch.Tensor, index: torch.Tensor, tokens_per_slot: int, slots: int) -> torch.Tensor:
    """The average of the gathered tokens x [B, K, D] within each time slot of a clip (token index // tokens_per_slot,
    `index` [B, K] as gathered) -> [B', D]: one row per (clip, slot) holding at least one token, clip-major."""
    onehot = torch.nn.functional.one_hot(index // tokens_per_slot, slots).to(x.dtype)   # [B, K, S]
    counts = onehot.sum(1)                                                                # [B, S]
    means = onehot.transpose(1, 2) @ x / counts.clamp(min=1).unsqueeze(-1)                # [B, S, D]
    return means[counts > 0]


def repeat_batch(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """[B, ...] -> [repeats * B, ...] in the same mask-major order as apply_masks with a list."""
    return x.repeat(repeats, *([1] * (x.dim() - 1)))


def pad_indices(idx: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Round a token count up to a multiple so that changing mask sizes give a few shapes (torch.compile builds one
    graph per shape).

    idx: [..., K] token indices -> ([..., K'] with K' the next multiple of `multiple`, padded by repeating each row's
    first index; valid: bool [K'], True on the K real tokens). With multiple <= 0: (idx, None), no padding. Padded
    tokens must be masked out of attention as keys (`valid`) and dropped from the outputs ([:, :K]); the real tokens'
    outputs are then the unpadded ones'. `valid` is returned even when K is already a multiple, so the same graph
    serves both cases."""
    if multiple <= 0:
        return idx, None
    k = idx.shape[-1]
    padded = -(-k // multiple) * multiple
    idx = torch.cat([idx, idx[..., :1].expand(*idx.shape[:-1], padded - k)], dim=-1)
    return idx, torch.arange(padded, device=idx.device) < k
