"""The action-conditioned predictor: s_{t+1} = P(s_{<=t}, a_{<=t}) over frozen-encoder latents.

A transformer over frames: each frame contributes its (pooled, layer-normed) patch tokens plus one action token,
attention is block-causal (every token of frame t sees all tokens of frames <= t and none of t+1), and the patch
outputs of frame t predict the latents of frame t+1 (V-JEPA 2-AC).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from jepa.errors import ConfigError
from jepa.pos_embed import sincos_1d


def block_causal_mask(frames: int, tokens_per_frame: int) -> torch.Tensor:
    """bool [F*M, F*M], True where attention is allowed: query frame >= key frame."""
    frame = torch.arange(frames * tokens_per_frame) // tokens_per_frame
    return frame[:, None] >= frame[None, :]


class ActionConditionedPredictor(nn.Module):
    """latents [B, T, N, D] and actions [B, T, A] (action t leads from frame t to t+1) -> predicted latents of
    frames 1..T: [B, T, N, D], as latents + a predicted change (the output layer starts at zero, so an untrained
    model predicts "nothing moves", the baseline it must beat).

    motion: each frame's input also carries its change since the previous frame (zero for a window's first frame),
    and the output is the next change, both in units of `change_scale` (per channel; WorldModel sets it to the
    training latents' one-step change std): where a step moves the latents by ~1e-3 of their scale, the change
    is otherwise invisible next to the latents themselves.
    whiten: the predictor works in PCA-whitened coordinates of the tokens, (z - latent_mean) @ whitener, and its
    predicted change is mapped back with unwhitener (WorldModel measures them on the training latents): where
    what moves lives in directions holding a thousandth of the variance (PointMaze's ball; the static maze holds
    the rest), a learned input layer on the raw tokens does not find it.
    whiten_dims: keep only the top whiten_dims principal directions (0: all): the predictor reads and predicts
    those coordinates only. With wide tokens (Reacher's 2,048 channels) whitening all of them puts thousands of
    unit-variance noise directions beside the few that move, and the predictor learned nothing."""

    def __init__(self, token_dim: int, num_tokens: int, action_dim: int, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, max_frames: int = 32, motion: bool = False, whiten: bool = False,
                 whiten_dims: int = 0) -> None:
        super().__init__()
        if whiten_dims and not (whiten and 0 < whiten_dims <= token_dim):
            raise ConfigError(f"whiten_dims = {whiten_dims} needs whiten true and at most the tokens' {token_dim} "
                              "channels")
        self.token_dim, self.num_tokens, self.action_dim = token_dim, num_tokens, action_dim
        self.max_frames = max_frames
        inner = whiten_dims or token_dim  # the coordinates the predictor reads and predicts
        self.latent_in = nn.Linear(inner, embed_dim)
        self.motion_in = nn.Linear(inner, embed_dim) if motion else None
        if motion:
            self.register_buffer("change_scale", torch.ones(inner))
        self.whiten = whiten
        if whiten:
            self.register_buffer("latent_mean", torch.zeros(token_dim))
            self.register_buffer("whitener", torch.eye(token_dim, inner))
            self.register_buffer("unwhitener", torch.eye(inner, token_dim))
        self.action_in = nn.Linear(action_dim, embed_dim)
        self.slot_pos = nn.Parameter(torch.zeros(1, 1, num_tokens + 1, embed_dim))  # action slot + patch slots
        nn.init.trunc_normal_(self.slot_pos, std=0.02)
        self.register_buffer("time_pos", sincos_1d(embed_dim, torch.arange(max_frames, dtype=torch.float64))[None, :, None],
                             persistent=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(embed_dim, inner)
        nn.init.zeros_(self.out.weight)  # predicts the change of each latent: starts as "nothing moves"
        nn.init.zeros_(self.out.bias)

    def io_weights(self) -> tuple[torch.Tensor, ...]:
        """The input, motion and output layers with the whitening and the change scale folded in (exactly the same
        maps as applying them one after the other): per token an E x D matmul each instead of D x D ones more
        (1.5x faster rollouts at D = 512). Computed once per forward or rollout, so gradients flow as unfolded."""
        w_in, b_in = self.latent_in.weight, self.latent_in.bias
        w_out, b_out = self.out.weight, self.out.bias
        w_motion = b_motion = None
        if self.motion_in is not None:
            scale = self.change_scale
            w_motion, b_motion = self.motion_in.weight / scale, self.motion_in.bias
            w_out, b_out = w_out * scale[:, None], b_out * scale
        if self.whiten:
            w_in = w_in @ self.whitener.T
            b_in = b_in - w_in @ self.latent_mean
            w_motion = w_motion @ self.whitener.T if w_motion is not None else None
            w_out, b_out = self.unwhitener.T @ w_out, b_out @ self.unwhitener
        return w_in, b_in, w_motion, b_motion, w_out, b_out

    def forward(self, latents: torch.Tensor, actions: torch.Tensor, last_only: bool = False,
                io: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """last_only: predict only the frame after the last one ([B, 1, N, D]; what a rollout step needs).
        io: io_weights(), when the caller computes them once for many calls."""
        b, t, n, _ = latents.shape
        if t > self.max_frames:
            raise ConfigError(f"world model takes at most {self.max_frames} frames, got {t}")
        if actions.shape[-1] != self.action_dim:
            raise ConfigError(f"this world model was trained for {self.action_dim}-D actions, got "
                              f"{actions.shape[-1]}-D ones")
        w_in, b_in, w_motion, b_motion, w_out, b_out = io if io is not None else self.io_weights()
        x = F.linear(latents, w_in, b_in)
        if w_motion is not None:
            change = torch.cat([torch.zeros_like(latents[:, :1]), latents[:, 1:] - latents[:, :-1]], 1)
            x = x + F.linear(change, w_motion, b_motion)
        x = torch.cat([self.action_in(actions)[:, :, None], x], 2)  # [B, T, 1+N, E]
        x = (x + self.slot_pos + self.time_pos[:, :t].to(x.dtype)).flatten(1, 2)
        mask = block_causal_mask(t, n + 1).to(x.device) if t > 1 else None  # one frame: full attention
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        x = x.unflatten(1, (t, n + 1))[:, :, 1:]
        if last_only:
            x, latents = x[:, -1:], latents[:, -1:]
        return latents + F.linear(self.norm(x), w_out, b_out)  # residual: frames change little per step

    def rollout(self, history: torch.Tensor, history_actions: torch.Tensor, actions: torch.Tensor,
                context: int | None = None) -> torch.Tensor:
        """Imagine H steps: history latents [B, k, N, D], the k-1 actions between them [B, k-1, A] and candidate
        actions [B, H, A] (the first one acts on the last history frame) -> predicted latents [B, H, N, D]. The
        model sees at most `context` frames (default max_frames), the most recent ones."""
        context = context or self.max_frames
        frames = list(history.unbind(1))
        acts = torch.cat([history_actions, actions], 1)
        k, io = len(frames), self.io_weights()
        preds = []
        for h in range(actions.shape[1]):
            lo = max(0, k + h - context)
            z = torch.stack(frames[lo:], 1)
            nxt = self(z, acts[:, lo : k + h], last_only=True, io=io)[:, -1]
            frames.append(nxt)
            preds.append(nxt)
        return torch.stack(preds, 1)
