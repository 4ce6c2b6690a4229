"""V-JEPA 3-D multi-block masks, vectorised on the device and keyed by the generator passed in.

Per batch and per mask configuration (V-JEPA: a short-range one, 8 blocks of spatial scale 0.15, and a long-range
one, 2 blocks of spatial scale 0.7; aspect 0.75-1.5; every block spanning all time steps): one block size, then
independent block positions per image. Target = the union of the blocks, context = the complement. Each image's
target and context are cut to the batch minimum by a random subset kept in token order (the official collator
keeps the first tokens, which biases the cut towards early frames and the top-left corner).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from jepa.errors import ConfigError
from jepa.errors import check_range as _check_range


@dataclass
class VideoMasks:
    """Token indices into the (t, h, w) row-major grid of one mask configuration: context [B, Kc], target [B, Kt]."""

    context: torch.Tensor
    target: torch.Tensor

    @property
    def targets(self) -> list[torch.Tensor]:
        """The configuration's target blocks, as jepa.module.JEPA reads every sampler's masks: one here."""
        return [self.target]


SHORT_RANGE = {"num_blocks": 8, "spatial_scale": (0.15, 0.15), "temporal_scale": (1.0, 1.0), "aspect": (0.75, 1.5)}
LONG_RANGE = {"num_blocks": 2, "spatial_scale": (0.7, 0.7), "temporal_scale": (1.0, 1.0), "aspect": (0.75, 1.5)}
TEMPORAL_ANCHORS = ("any", "end")


class MultiBlock3DMaskSampler:
    """V-JEPA's multi-block masks: a list of configurations, each giving one (context, target) pair per batch.

    Args:
        configs: per configuration, `num_blocks`, `spatial_scale` [min, max] (fraction of the h x w grid per block),
            `temporal_scale` [min, max] (fraction of the time steps a block spans; V-JEPA: 1.0), `aspect`
            [min, max] (height / width) and `temporal_anchor`: `any` (V-JEPA: a block starts at any time step that
            fits) or `end` (every block ends at the last time step: the context is the past, the target the future,
            which only velocity predicts, where a block in the middle can be interpolated from both sides). Default:
            V-JEPA's short-range and long-range configurations.
        min_keep: fewest context tokens an image may keep; images with fewer are redrawn.
        max_tries: redraws before a last resort (targets given back to the context until min_keep is reached).
    """

    def __init__(self, configs: list[dict] | None = None, min_keep: int = 1, max_tries: int = 20) -> None:
        configs = [dict(SHORT_RANGE), dict(LONG_RANGE)] if configs is None else configs
        if not configs:
            raise ConfigError("model.mask_sampler.configs must hold at least one mask configuration")
        self.configs = []
        for i, cfg in enumerate(configs):
            unknown = set(cfg) - {"num_blocks", "spatial_scale", "temporal_scale", "aspect", "temporal_anchor"}
            if unknown:
                raise ConfigError(f"model.mask_sampler.configs[{i}] has unknown keys {sorted(unknown)}")
            n = int(cfg.get("num_blocks", 1))
            if n < 1:
                raise ConfigError(f"model.mask_sampler.configs[{i}].num_blocks must be >= 1, got {n}")
            anchor = cfg.get("temporal_anchor", "any")
            if anchor not in TEMPORAL_ANCHORS:
                raise ConfigError(f"model.mask_sampler.configs[{i}].temporal_anchor must be one of "
                                  f"{', '.join(TEMPORAL_ANCHORS)}, got {anchor!r}")
            self.configs.append({
                "num_blocks": n,
                "spatial_scale": _check_range(f"configs[{i}].spatial_scale", cfg.get("spatial_scale", (0.15, 0.15)), 0.0, 1.0),
                "temporal_scale": _check_range(f"configs[{i}].temporal_scale", cfg.get("temporal_scale", (1.0, 1.0)), 0.0, 1.0),
                "aspect": _check_range(f"configs[{i}].aspect", cfg.get("aspect", (0.75, 1.5)), 0.0, math.inf),
                "temporal_anchor": anchor,
            })
        if min_keep < 1:
            raise ConfigError(f"model.mask_sampler.min_keep must be >= 1, got {min_keep}")
        self.min_keep, self.max_tries = min_keep, max_tries

    @staticmethod
    def _between(lo_hi, u: float) -> float:
        return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])

    def block_size(self, cfg: dict, grid: tuple[int, int, int], u: list[float]) -> tuple[int, int, int]:
        t, h, w = grid
        bt = min(t, max(1, int(t * self._between(cfg["temporal_scale"], u[0]))))
        area = self._between(cfg["spatial_scale"], u[1]) * h * w
        ratio = self._between(cfg["aspect"], u[2])
        return bt, min(h, max(1, round(math.sqrt(area * ratio)))), min(w, max(1, round(math.sqrt(area / ratio))))

    def target_mask(self, cfg: dict, n: int, grid, size, generator: torch.Generator) -> torch.Tensor:
        """[n, t, h, w] bool: the union of cfg's blocks (each of `size`) at random positions per image."""
        (t, h, w), (bt, bh, bw), device = grid, size, generator.device
        shape = (n, cfg["num_blocks"])

        def start(extent: int, block: int) -> torch.Tensor:
            return (torch.rand(shape, generator=generator, device=device) * (extent - block + 1)).long().clamp_(max=extent - block)

        t0 = start(t, bt) if cfg["temporal_anchor"] == "any" else torch.full(shape, t - bt, device=device)
        r0, c0 = start(h, bh), start(w, bw)

        def inside(extent: int, first: torch.Tensor, block: int) -> torch.Tensor:  # [n, blocks, extent]
            pos = torch.arange(extent, device=device)
            return (pos >= first[..., None]) & (pos < first[..., None] + block)

        blocks = (inside(t, t0, bt)[..., :, None, None] & inside(h, r0, bh)[..., None, :, None]
                  & inside(w, c0, bw)[..., None, None, :])
        return blocks.any(dim=1)

    def __call__(self, batch_size: int, grid: tuple[int, int, int], generator: torch.Generator) -> list[VideoMasks]:
        t, h, w = grid
        device = generator.device
        out = []
        for cfg in self.configs:
            size = self.block_size(cfg, grid, torch.rand(3, generator=generator, device=device).tolist())
            target = self.target_mask(cfg, batch_size, grid, size, generator)
            for _ in range(self.max_tries):  # redraw the images whose context is too small
                bad = (~target).flatten(1).sum(1) < self.min_keep
                if not bad.any():
                    break
                target = torch.where(bad[:, None, None, None], self.target_mask(cfg, batch_size, grid, size, generator), target)
            target = target.flatten(1)
            short = self.min_keep - (~target).sum(1)
            if (short > 0).any():  # last resort: hand random target tokens back to the context
                scores = torch.rand(target.shape, generator=generator, device=device).masked_fill_(~target, -1.0)
                give = scores.argsort(dim=1, descending=True)
                back = torch.arange(target.shape[1], device=device) < short.clamp(min=0)[:, None]
                target = target.clone().scatter_(1, give, target.gather(1, give) & ~back)
            out.append(VideoMasks(context=self._subset(~target, generator), target=self._subset(target, generator)))
        return out

    @staticmethod
    def _subset(member: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[B, N] bool -> [B, K] indices: each row's members cut to the batch minimum K by a random subset, sorted."""
        keep = int(member.sum(1).min())
        scores = torch.rand(member.shape, generator=generator, device=generator.device).masked_fill_(~member, -1.0)
        return scores.topk(keep, dim=1).indices.sort(dim=1).values
