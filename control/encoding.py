"""The frozen encoder as the world model sees it: uint8 frames in, (pooled) patch tokens out.

Any encoder of this project plugs in through VisionTransformer.encode (DESIGN.md section 2); it is frozen here and
its tokens are average-pooled to a small grid (patch tokens plan far better than one vector, and a 4x4 grid keeps
the world model cheap on a CPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jepa.checkpoint import load_encoder
from jepa.errors import ConfigError


class FrozenEncoder(nn.Module):
    """encode(frames uint8 [B, T, H, W, C]) -> latents [B, T, G*G, D]: the encoder's last-layer patch tokens,
    average-pooled to G x G (G = pool_grid, or the encoder's own grid when pool_grid is 0), then layer-normed
    without affine parameters (the targets of the world model's L1 loss, as in V-JEPA 2-AC)."""

    def __init__(self, encoder: nn.Module, mean, std, pool_grid: int = 4, source: str = "encoder") -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.source, self.pool_grid = source, pool_grid or encoder.grid
        if encoder.grid % self.pool_grid:
            raise ConfigError(f"pool_grid {pool_grid} must divide the encoder's {encoder.grid}x{encoder.grid} grid")
        if len(mean) != encoder.in_chans or len(std) != encoder.in_chans:
            raise ConfigError(f"mean/std have {len(mean)} channels, {source} takes {encoder.in_chans}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def from_checkpoint(cls, path: str, mean, std, pool_grid: int = 4, which: str = "auto") -> "FrozenEncoder":
        encoder, _ = load_encoder(path, which)
        return cls(encoder, mean, std, pool_grid, source=str(path))

    @property
    def source_digest(self) -> str:
        """sha256 of the encoder's weights (what a cache of its latents must be keyed by)."""
        import hashlib

        digest = hashlib.sha256()
        for key, value in sorted(self.encoder.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @property
    def num_tokens(self) -> int:
        return self.pool_grid**2

    @property
    def dim(self) -> int:
        return self.encoder.embed_dim

    def check_frames(self, shape) -> None:
        """Refuse observations the encoder was not built for, naming both shapes."""
        h, w, c = shape[-3:]
        e = self.encoder
        if (h, w) != (e.img_size, e.img_size) or c != e.in_chans:
            raise ConfigError(f"{self.source} takes {e.img_size}x{e.img_size} frames with {e.in_chans} channels, "
                              f"the environment gives {h}x{w} with {c}")

    def train(self, mode: bool = True):  # always in eval mode: frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        self.check_frames(frames.shape)
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        out = []
        for start in range(0, len(flat), batch_size):
            x = flat[start : start + batch_size].to(self.mean.device).permute(0, 3, 1, 2).float().div_(255)
            tokens = self.encoder.encode(((x - self.mean) / self.std)[:, None])[:, 0]  # [n, N, D]
            pooled = self.pool(tokens)
            out.append(F.layer_norm(pooled, pooled.shape[-1:]))
        return torch.cat(out).unflatten(0, (b, t))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        g, d = self.encoder.grid, tokens.shape[-1]
        if self.pool_grid == g:
            return tokens
        grid = tokens.transpose(1, 2).reshape(-1, d, g, g)
        return F.adaptive_avg_pool2d(grid, self.pool_grid).flatten(2).transpose(1, 2)
