"""The frozen encoder as the world model sees it: uint8 frames in, (pooled) patch tokens out.

Any encoder of this project plugs in through VisionTransformer.encode (docs/design.md, "The encoder interface"); it
is frozen here and its tokens are average-pooled to a small grid (patch tokens plan far better than one vector, and
a 2x2 grid keeps the world model cheap on a CPU). `fold` keeps finer detail at the same token count: the grid is pooled to
(pool_grid * fold)^2 tokens and each fold x fold block is concatenated into one token (space-to-depth), so the
predictor's attention still runs over pool_grid^2 tokens and only its input / output layers grow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jepa.checkpoint import load_encoder
from jepa.errors import ConfigError


class FrozenEncoder(nn.Module):
    """encode(frames uint8 [B, T, H, W, C]) -> latents [B, T, G*G, D*F*F]: the encoder's last-layer patch tokens,
    average-pooled to (G*F) x (G*F) (G = pool_grid, or the encoder's own grid when pool_grid is 0; F = fold),
    layer-normed without affine parameters (the targets of the world model's L1 loss, as in V-JEPA 2-AC; not with
    layer_norm false: a pixel world model's latents, kept in scale by SIGReg instead), each F x F block then
    concatenated into one token."""

    def __init__(self, encoder: nn.Module, mean, std, pool_grid: int = 4, source: str = "encoder",
                 fold: int = 1, layer_norm: bool = True) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.source, self.pool_grid, self.fold = source, pool_grid or encoder.grid, fold
        self.layer_norm = layer_norm
        if fold < 1 or encoder.grid % (self.pool_grid * fold):
            raise ConfigError(f"pool_grid {pool_grid} x fold {fold} must divide the encoder's "
                              f"{encoder.grid}x{encoder.grid} grid")
        if len(mean) != encoder.in_chans or len(std) != encoder.in_chans:
            raise ConfigError(f"mean/std have {len(mean)} channels, {source} takes {encoder.in_chans}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def from_checkpoint(cls, path: str, pool_grid: int = 4, fold: int = 1, which: str = "auto",
                        mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> "FrozenEncoder":
        """The encoder of a checkpoint or export of this project (`which`: target_encoder, encoder or auto) with the
        pooling above; frames are normalised as the encoder was pretrained (the normalisation its checkpoint
        recorded), or by `mean` / `std` given here."""
        encoder, hparams = load_encoder(path, which)
        recorded = hparams.get("normalisation") or {}
        mean = recorded.get("mean") if mean is None else mean
        std = recorded.get("std") if std is None else std
        if mean is None or std is None:
            raise ConfigError(f"{path} records no input normalisation: give the frozen encoder's mean and std (its "
                              "pretraining data's, one value per channel)")
        return cls(encoder, mean, std, pool_grid, source=str(path), fold=fold)

    @property
    def settings(self) -> dict:
        """What rebuilds this module without the file it was read from (from_settings): the encoder's architecture,
        the normalisation and the pooling; its weights travel in the state dict of the module that holds it."""
        return {"architecture": self.encoder.architecture, "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist(), "pool_grid": self.pool_grid, "fold": self.fold,
                "source": self.source, "layer_norm": self.layer_norm}

    @classmethod
    def from_settings(cls, settings: dict) -> "FrozenEncoder":
        """An encoder of the recorded architecture with untrained weights: load the holder's state dict next."""
        from jepa.vit import VisionTransformer

        return cls(VisionTransformer(**settings["architecture"]), settings["mean"], settings["std"],
                   settings["pool_grid"], source=settings["source"], fold=settings["fold"],
                   layer_norm=settings.get("layer_norm", True))  # recorded since pixel world models exist

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
        return self.encoder.embed_dim * self.fold**2

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
        out = [self.embed(flat[start : start + batch_size]) for start in range(0, len(flat), batch_size)]
        return torch.cat(out).unflatten(0, (b, t))

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [n, H, W, C] -> latents [n, G*G, D*F*F], with gradients to the encoder where it trains (a
        pixel world model's; forward() is the frozen, batched path)."""
        x = frames.to(self.mean.device).permute(0, 3, 1, 2).float().div_(255)
        pooled = self.pool(self.encoder.encode(((x - self.mean) / self.std)[:, None])[:, 0])  # [n, N, D]
        return self.fold_blocks(F.layer_norm(pooled, pooled.shape[-1:]) if self.layer_norm else pooled)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """[n, g*g, D] -> [n, (G*F)^2, D], row-major."""
        g, d, size = self.encoder.grid, tokens.shape[-1], self.pool_grid * self.fold
        if size == g:
            return tokens
        grid = tokens.transpose(1, 2).reshape(-1, d, g, g)
        return F.adaptive_avg_pool2d(grid, size).flatten(2).transpose(1, 2)

    def fold_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """[n, (G*F)^2, D] row-major -> [n, G*G, F*F*D]: each token concatenates its F x F block."""
        f, g = self.fold, self.pool_grid
        if f == 1:
            return tokens
        n, _, d = tokens.shape
        blocks = tokens.reshape(n, g, f, g, f, d).permute(0, 1, 3, 2, 4, 5)  # [n, row, col, row-in, col-in, D]
        return blocks.reshape(n, g * g, f * f * d)
