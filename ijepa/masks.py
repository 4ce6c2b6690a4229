"""I-JEPA multi-block masks, vectorised on the device.

Per batch: one target-block size and one context-block size (as in the paper, so every target block of the
batch has the same number of tokens and stacks without truncation); per image: independent block positions.
Differences from the official sampler, each a bug fix:
- block corners reach the last row and column (top is drawn from [0, H - h] inclusive);
- scale and aspect ratio come from two independent draws;
- the context is truncated to the batch minimum by a random subset, not by keeping its first (top-left) tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from jepa.errors import ConfigError
from jepa.errors import check_range as _check_range


@dataclass
class Masks:
    """Token indices into the row-major patch grid: context [B, Kc]; targets [num_targets, B, Kt]."""

    context: torch.Tensor
    targets: torch.Tensor


class MultiBlockMaskSampler:
    """The paper's multi-block sampler: `num_targets` target blocks and one context block with the targets removed.

    Args:
        num_targets: target blocks per image (paper: 4).
        target_scale: fraction of the patch grid covered by each target block (paper: 0.15-0.2).
        target_aspect: height/width ratio range of target blocks (paper: 0.75-1.5).
        context_scale: fraction of the grid covered by the context block before targets are removed (paper: 0.85-1.0).
        context_aspect: height/width ratio range of the context block (paper: 1.0-1.0).
        min_keep: fewest context tokens an image may keep; a draw with fewer is redrawn.
        max_tries: redraws before falling back to "everything that is not a target" as the context.
    """

    def __init__(
        self,
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        context_aspect: tuple[float, float] = (1.0, 1.0),
        min_keep: int = 10,
        max_tries: int = 20,
    ) -> None:
        if num_targets < 1:
            raise ConfigError(f"model.mask_sampler.num_targets must be >= 1, got {num_targets}")
        if min_keep < 1:
            raise ConfigError(f"model.mask_sampler.min_keep must be >= 1, got {min_keep}")
        self.num_targets, self.min_keep, self.max_tries = num_targets, min_keep, max_tries
        self.target_scale = _check_range("target_scale", target_scale, 0.0, 1.0)
        self.context_scale = _check_range("context_scale", context_scale, 0.0, 1.0)
        self.target_aspect = _check_range("target_aspect", target_aspect, 0.0, math.inf)
        self.context_aspect = _check_range("context_aspect", context_aspect, 0.0, math.inf)

    @staticmethod
    def _uniform(lo_hi: tuple[float, float], u: float) -> float:
        return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])

    def block_size(self, scale: tuple[float, float], aspect: tuple[float, float], h: int, w: int, u) -> tuple[int, int]:
        """(height, width) in patches for a block covering about scale * h * w patches at a given aspect."""
        area = self._uniform(scale, float(u[0])) * h * w
        ratio = self._uniform(aspect, float(u[1]))
        bh = min(h, max(1, round(math.sqrt(area * ratio))))
        bw = min(w, max(1, round(math.sqrt(area / ratio))))
        return bh, bw

    @staticmethod
    def _corners(n: tuple[int, ...], h: int, w: int, bh: int, bw: int, g: torch.Generator, device) -> tuple:
        top = (torch.rand(n, generator=g, device=device) * (h - bh + 1)).long().clamp_(max=h - bh)
        left = (torch.rand(n, generator=g, device=device) * (w - bw + 1)).long().clamp_(max=w - bw)
        return top, left

    def __call__(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator) -> Masks:
        h, w = grid
        device = generator.device
        # Block sizes are per batch; four independent numbers (scale and aspect of target and context).
        u = torch.rand(4, generator=generator, device=device).tolist()
        th, tw = self.block_size(self.target_scale, self.target_aspect, h, w, u[0:2])
        ch, cw = self.block_size(self.context_scale, self.context_aspect, h, w, u[2:4])
        if h * w - th * tw < self.min_keep:
            raise ConfigError(
                f"a {th}x{tw} target block leaves fewer than min_keep={self.min_keep} of {h}x{w} patches: "
                "lower model.mask_sampler.target_scale or min_keep"
            )
        offsets = (torch.arange(th, device=device)[:, None] * w + torch.arange(tw, device=device)).flatten()
        rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)

        def draw(n: int):
            top, left = self._corners((n, self.num_targets), h, w, th, tw, generator, device)
            targets = (top * w + left)[..., None] + offsets  # [n, T, th*tw]
            covered = torch.zeros(n, h * w, dtype=torch.bool, device=device)
            covered.scatter_(1, targets.flatten(1), True)
            ctop, cleft = self._corners((n,), h, w, ch, cw, generator, device)
            in_rows = (rows >= ctop[:, None]) & (rows < (ctop + ch)[:, None])
            in_cols = (cols >= cleft[:, None]) & (cols < (cleft + cw)[:, None])
            context = (in_rows[:, :, None] & in_cols[:, None, :]).flatten(1) & ~covered
            return targets, covered, context

        targets, covered, context = draw(batch_size)
        for _ in range(self.max_tries):  # redraw only the images whose context came out too small
            bad = context.sum(1) < self.min_keep
            if not bad.any():
                break
            t2, c2, x2 = draw(batch_size)
            targets = torch.where(bad[:, None, None], t2, targets)
            covered = torch.where(bad[:, None], c2, covered)
            context = torch.where(bad[:, None], x2, context)
        bad = context.sum(1) < self.min_keep
        context = torch.where(bad[:, None], ~covered, context)  # last resort: everything that is not a target
        keep = int(context.sum(1).min())
        if keep < self.min_keep:
            raise ConfigError(
                f"{self.num_targets} target blocks of {th}x{tw} leave fewer than min_keep={self.min_keep} context "
                f"patches on a {h}x{w} grid: lower model.mask_sampler.num_targets, target_scale or min_keep"
            )
        # Truncate every context to the batch minimum with a random subset (no top-left bias), kept in grid order.
        scores = torch.rand(batch_size, h * w, generator=generator, device=device).masked_fill_(~context, -1.0)
        ctx_idx = scores.topk(keep, dim=1).indices.sort(dim=1).values
        return Masks(context=ctx_idx, targets=targets.permute(1, 0, 2).contiguous())
