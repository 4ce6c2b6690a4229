"""ViT context/target encoder and the narrow JEPA predictor, built on timm blocks (SDPA attention).

Parameter names follow the official I-JEPA code (patch_embed.proj, blocks.N, norm, pos_embed;
predictor_embed, mask_token, predictor_blocks.N, predictor_norm, predictor_proj), so imported
checkpoints map one-to-one.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.utils.checkpoint
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from jepa.errors import ConfigError
from jepa.masking import apply_masks, pad_indices, repeat_batch
from jepa.pos_embed import sincos_2d, sincos_3d

LayerNorm = partial(nn.LayerNorm, eps=1e-6)

# (embed_dim, depth, num_heads) of the standard ViT sizes.
VIT_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
    "giant": (1408, 40, 16),
}

ENCODER_ARGS = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")
VIDEO_ARGS = ("num_frames", "tubelet_size", "uniform_power")  # absent from image checkpoints


STEM_ARG = "stem"  # absent where the stem is the plain patch projection


def encoder_args(hparams: dict) -> dict:
    """The VisionTransformer arguments held in a checkpoint's hyperparameters (video and stem ones only when
    present)."""
    return {k: hparams[k] for k in ENCODER_ARGS + VIDEO_ARGS + (STEM_ARG,) if k in hparams}


def _blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path_rate: float) -> nn.ModuleList:
    if dim % num_heads:
        raise ConfigError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
    rates = torch.linspace(0, drop_path_rate, depth).tolist()
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r, norm_layer=LayerNorm) for r in rates
    )


def run_block(block: nn.Module, x: torch.Tensor, checkpointing: bool,
              attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A block, recomputed in the backward pass instead of storing its activations when checkpointing is on
    (activation checkpointing: less memory for ~1/3 more compute)."""
    if checkpointing and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(block, x, attn_mask, use_reentrant=False)
    return block(x, attn_mask)


def _init_weights(module: nn.Module, blocks: nn.ModuleList, std: float = 0.02) -> None:
    """Truncated-normal linear/conv weights, zero biases, unit LayerNorm; then each block's output
    projections are divided by sqrt(2 * layer_id) so the residual stream does not grow with depth."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for layer_id, block in enumerate(blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))


def grid_size(img_size: int, patch_size: int, key: str = "img_size") -> int:
    if patch_size <= 0 or img_size <= 0 or img_size % patch_size:
        raise ConfigError(
            f"patch_size {patch_size} does not divide {key} {img_size}: pick a patch size that divides the image size"
        )
    return img_size // patch_size


class TubeletEmbed(nn.Module):
    """Video [B, C, T, H, W] -> tokens [B, T/t * H/p * W/p, D] by a Conv3d with kernel = stride = (t, p, p)."""

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, (tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """Image [B, C, H, W] -> tokens [B, H/p * W/p, D] through early convolutions instead of one patch projection
    (Xiao et al. 2021, "Early convolutions help transformers see better"): 3 x 3 stride-2 convolutions halve the image
    until a position covers a patch, then a 1 x 1 convolution to the width. Trained briefly, a ViT's patch projection
    missed what a few pixels' orientation shows (Push-T's block angle, docs/push_t.md) where small convolutions
    learned it."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        halvings = patch_size.bit_length() - 1
        if patch_size < 2 or 1 << halvings != patch_size:
            raise ConfigError(f"stem 'conv' needs a patch_size that is a power of two, got {patch_size}")
        widths = [in_chans] + [min(embed_dim, 32 << i) for i in range(halvings)]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GELU()]
        self.proj = nn.Sequential(*layers, nn.Conv2d(widths[-1], embed_dim, 1))

    def reset_parameters(self) -> None:
        """PyTorch's fan-in init for every convolution: at the blocks' std 0.02 each would shrink the signal."""
        for m in self.proj:
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT encoder without CLS token: Conv2d patches + fixed 2-D sin-cos position embedding for images, or (with
    num_frames > 1) Conv3d tubelets + fixed 3-D sin-cos embedding for videos [B, C, T, H, W]. I-JEPA and V-JEPA
    share it: the blocks, norms and masking are the same.

    `forward(x, masks)` keeps only the token indices in `masks` (after the position embedding is added),
    which is how the context encoder sees the context block.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        num_frames: int = 1,
        tubelet_size: int = 2,
        uniform_power: bool = False,
        stem: str = "patch",
    ) -> None:
        super().__init__()
        if stem not in ("patch", "conv") or (stem == "conv" and num_frames > 1):
            raise ConfigError(f"stem must be 'patch' or (for an image encoder) 'conv', got {stem!r}"
                              + (f" with num_frames {num_frames}" if stem == "conv" else ""))
        self.stem = stem
        self.grid = grid_size(img_size, patch_size)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.num_frames, self.tubelet_size, self.uniform_power = num_frames, tubelet_size, uniform_power
        if num_frames > 1:
            if tubelet_size < 1 or num_frames % tubelet_size:
                raise ConfigError(f"tubelet_size {tubelet_size} does not divide num_frames {num_frames}")
            self.grid_t = num_frames // tubelet_size
            self.patch_embed = TubeletEmbed(patch_size, tubelet_size, in_chans, embed_dim)
            pos = sincos_3d(embed_dim, self.grid_t, self.grid, self.grid, uniform_power)
        else:
            self.grid_t = 1
            # other image sizes are accepted (local views); their position embedding is resampled in forward
            self.patch_embed = (ConvStem(patch_size, in_chans, embed_dim) if stem == "conv" else
                                PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False))
            pos = sincos_2d(embed_dim, self.grid, self.grid)
        self.register_buffer("pos_embed", pos[None])
        self.blocks = _blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = LayerNorm(embed_dim)
        self.grad_checkpointing = False  # set_grad_checkpointing(True): activation checkpointing per block
        _init_weights(self, self.blocks)
        if isinstance(self.patch_embed, ConvStem):
            self.patch_embed.reset_parameters()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @property
    def architecture(self) -> dict:
        """The constructor arguments that fix this encoder's shape: enough to rebuild it before loading weights."""
        return {**{k: getattr(self, k) for k in ENCODER_ARGS + VIDEO_ARGS if k != "depth"}, "depth": len(self.blocks),
                **({STEM_ARG: self.stem} if self.stem != "patch" else {})}

    @property
    def is_video(self) -> bool:
        return self.num_frames > 1

    @property
    def num_patches(self) -> int:
        return self.grid_t * self.grid * self.grid

    @property
    def token_grid(self) -> tuple[int, ...]:
        """The token layout mask samplers draw on: (rows, columns), or (time, rows, columns) for video."""
        return (self.grid_t, self.grid, self.grid) if self.is_video else (self.grid, self.grid)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None, return_layers: list[int] | None = None,
                valid: torch.Tensor | None = None):
        """x: [B, C, H, W] (or [B, C, T, H, W] for a video encoder) -> [B, N or K, D]. With return_layers, also a
        list of those blocks' outputs (each passed through the final norm, as the probes of the I-JEPA paper use
        them). valid: bool [K] for padded `masks` (jepa.masking.pad_indices): only those tokens are attended to."""
        x = self.patch_embed(x) + self.position_embedding(x.shape[-2:]).to(x.dtype)
        if masks is not None:
            x = apply_masks(x, masks)
        attn_mask = None if valid is None else valid[None, :]
        layers = []
        for i, block in enumerate(self.blocks):
            x = run_block(block, x, self.grad_checkpointing, attn_mask)
            if return_layers is not None and i in return_layers:
                layers.append(self.norm(x))
        x = self.norm(x)
        return (x, layers) if return_layers is not None else x

    def position_embedding(self, size) -> torch.Tensor:
        """The fixed position embedding for an input of spatial `size` (H, W): the built one, or for an image of
        another size (a local view) the built one resampled to that size's grid, as timm's dynamic_img_size does."""
        grid = (size[0] // self.patch_size, size[1] // self.patch_size)
        if self.is_video or grid == (self.grid, self.grid):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(grid), [self.grid, self.grid], num_prefix_tokens=0)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The project-wide encoder interface: frames [B, T, C, H, W] -> tokens [B, T', N, D].

        An image encoder embeds each frame (T' = T). A video encoder embeds the clip (T' = T / tubelet_size); a
        single frame is repeated to the encoder's num_frames, as V-JEPA 2 does for images."""
        b, t = frames.shape[:2]
        if not self.is_video:
            return self(frames.flatten(0, 1)).unflatten(0, (b, t))
        if t == 1:
            frames = frames.expand(-1, self.num_frames, -1, -1, -1)
        elif t != self.num_frames:
            raise ConfigError(f"this video encoder takes {self.num_frames} frames (or 1), got {t}")
        tokens = self(frames.transpose(1, 2))  # [B, C, T, H, W]
        return tokens.unflatten(1, (self.grid_t, self.grid * self.grid))


class Predictor(nn.Module):
    """Narrow transformer that predicts target-token embeddings from context tokens.

    Each target set is its own batch entry: the context is repeated once per target block and attends only to that
    block's mask tokens (sharing one sequence across blocks would let blocks see each other and change the maths).

    I-JEPA: 2-D position embedding, one learned `mask_token`. V-JEPA (grid_t > 1 and/or num_mask_tokens >= 1):
    3-D position embedding and one zero-initialised token per mask configuration (`mask_tokens.i`), chosen by
    `mask_index` in forward.

    shared_context=True is a recipe change (off by default, not the papers'): one sequence per image holds the
    context once and every target block's mask tokens, under an attention mask where context tokens attend to the
    context only and each block's mask tokens to the context and their own block. Blocks still never see each
    other, but the context no longer attends to the mask tokens, so predictions differ from the paper's; the
    predictor processes Kc + M*Kt tokens per image instead of M*(Kc + Kt).
    """

    def __init__(
        self,
        grid: int,
        embed_dim: int = 768,
        predictor_embed_dim: int = 384,
        depth: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        grid_t: int = 1,
        uniform_power: bool = False,
        num_mask_tokens: int = 0,
        shared_context: bool = False,
    ) -> None:
        super().__init__()
        self.shared_context = shared_context
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        if num_mask_tokens:
            self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
                                                for _ in range(num_mask_tokens))
        else:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        pos = (sincos_3d(predictor_embed_dim, grid_t, grid, grid, uniform_power) if grid_t > 1
               else sincos_2d(predictor_embed_dim, grid, grid))
        self.register_buffer("predictor_pos_embed", pos[None])
        self.predictor_blocks = _blocks(predictor_embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.predictor_norm = LayerNorm(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        self.grad_checkpointing = False
        _init_weights(self, self.predictor_blocks)
        if not num_mask_tokens:
            trunc_normal_(self.mask_token, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, ctx: torch.Tensor, ctx_masks: torch.Tensor, tgt_masks: list[torch.Tensor],
                mask_index: int = 0, ctx_valid: torch.Tensor | None = None,
                tgt_valid: torch.Tensor | None = None) -> torch.Tensor:
        """ctx: [B, Kc, D] context-encoder tokens at indices ctx_masks [B, Kc];
        tgt_masks: list of [B, Kt] -> predictions [len(tgt_masks) * B, Kt, D], mask-major.
        ctx_valid [Kc], tgt_valid [Kt]: for padded indices (jepa.masking.pad_indices), the tokens that are real;
        padded ones are never attended to."""
        b, n_ctx = ctx.shape[:2]
        pos = self.predictor_pos_embed.expand(b, -1, -1).to(ctx.dtype)
        x = self.predictor_embed(ctx) + apply_masks(pos, ctx_masks)
        token = self.mask_tokens[mask_index % len(self.mask_tokens)] if hasattr(self, "mask_tokens") else self.mask_token
        m, kt = len(tgt_masks), tgt_masks[0].shape[1]
        if ctx_valid is None and tgt_valid is None:
            keys = None
        else:
            ones = partial(torch.ones, dtype=torch.bool, device=x.device)
            keys = (ctx_valid if ctx_valid is not None else ones(n_ctx),
                    tgt_valid if tgt_valid is not None else ones(kt))
        if self.shared_context:
            return self._shared_context_forward(x, pos, token, tgt_masks, keys)
        x = repeat_batch(x, m)
        queries = token.to(x.dtype) + apply_masks(pos, tgt_masks)
        x = torch.cat([x, queries], dim=1)
        attn_mask = None if keys is None else torch.cat(keys)[None, :]
        for block in self.predictor_blocks:
            x = run_block(block, x, self.grad_checkpointing, attn_mask)
        x = self.predictor_norm(x[:, n_ctx:])
        return self.predictor_proj(x)

    def _shared_context_forward(self, x: torch.Tensor, pos: torch.Tensor, token: torch.Tensor,
                                tgt_masks: list[torch.Tensor], keys: tuple[torch.Tensor, torch.Tensor] | None
                                ) -> torch.Tensor:
        b, n_ctx = x.shape[:2]
        m, kt = len(tgt_masks), tgt_masks[0].shape[1]
        queries = torch.cat([token.to(x.dtype) + apply_masks(pos, [t]) for t in tgt_masks], dim=1)  # [B, M*Kt, D]
        x = torch.cat([x, queries], dim=1)
        # group -1: context; group i: block i's mask tokens. A token sees the context and its own group.
        group = torch.cat([torch.full((n_ctx,), -1), torch.arange(m).repeat_interleave(kt)]).to(x.device)
        attn_mask = (group[None, :] == -1) | (group[:, None] == group[None, :])
        if keys is not None:  # padded tokens are nobody's keys
            attn_mask = attn_mask & torch.cat([keys[0], keys[1].repeat(m)])[None, :]
        for block in self.predictor_blocks:
            x = run_block(block, x, self.grad_checkpointing, attn_mask)
        x = self.predictor_norm(x[:, n_ctx:]).view(b, m, kt, -1).transpose(0, 1).reshape(m * b, kt, -1)
        return self.predictor_proj(x)


def context_and_predictions(encoder: nn.Module, predictor: nn.Module, x: torch.Tensor, context: torch.Tensor,
                            targets, pad_multiple: int = 0, mask_index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainable half of a JEPA step: the context encoder's tokens z [B, Kc, D] at `context` [B, Kc] and the
    predictions [M * B, Kt, D] of the M target blocks `targets` ([M, B, Kt] or a list of [B, Kt]).

    pad_multiple > 0 pads both index sets to a multiple of it (jepa.masking.pad_indices), masks the padding out of
    attention and cuts it from the outputs: the same values (up to float rounding), but a few tensor shapes instead
    of one per mask size, so that a compiled encoder and predictor are not recompiled for every batch."""
    if pad_multiple <= 0:
        z = encoder(x, context)
        return z, predictor(z, context, list(targets), mask_index)
    kc, kt = context.shape[1], targets[0].shape[1]
    ctx, ctx_valid = pad_indices(context, pad_multiple)
    tgts, tgt_valid = pad_indices(torch.stack(list(targets)), pad_multiple)
    z = encoder(x, ctx, valid=ctx_valid)
    pred = predictor(z, ctx, list(tgts), mask_index, ctx_valid=ctx_valid, tgt_valid=tgt_valid)
    return z[:, :kc], pred[:, :kt]
