"""Frozen-encoder features: encode images once, then pool the tokens per probe protocol."""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from jepa.errors import ConfigError

PROTOCOLS = {
    "avg": "global average of the patch tokens (the I-JEPA literature's standard)",
    "flat": "all patch tokens, flattened (spatial)",
    "avg+2x2": "global average concatenated with a 2x2 grid of average-pooled tokens (spatial, compact)",
}


@torch.no_grad()
def encode_tokens(encoder: nn.Module, images: torch.Tensor, mean, std, batch_size: int = 256, layers: int = 1,
                  desc: str = "features") -> torch.Tensor:
    """uint8 images [N, C, H, W] -> tokens [N, T, layers * D] (float32, CPU), with a progress bar.

    layers=1: the last block's output after the final norm; layers=k: the last k blocks' outputs, each through the
    final norm, concatenated along the feature axis (the I-JEPA paper's last-4 probe)."""
    depth = len(encoder.blocks)
    if not 1 <= layers <= depth:
        raise ValueError(f"layers must be between 1 and the encoder's depth {depth}, got {layers}")
    encoder = encoder.eval()
    device = next(encoder.parameters()).device
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    wanted = list(range(depth - layers, depth))
    # filled batch by batch: a list of batches and its torch.cat would hold the tokens twice (12 GB for the last 4
    # layers of 60k images)
    out = None
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False):
        x = images[start : start + batch_size].to(device).float().div_(255).sub_(mean_t).div_(std_t)
        if layers == 1:
            tokens = encoder(x)
        else:
            _, outs = encoder(x, return_layers=wanted)
            tokens = torch.cat(outs, dim=-1)
        if out is None:
            out = torch.empty((len(images), *tokens.shape[1:]), dtype=torch.float32)
        out[start : start + len(x)] = tokens.float().cpu()
    if out is None:
        raise ValueError("no images to encode")
    return out


def pixel_tokens(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Raw pixels cut into the encoder's patches: uint8 [N, C, H, W] -> [N, T, C*p*p] in [0, 1], so the pixel
    baseline goes through exactly the same pooling and probe as an encoder."""
    x = images.float().div(255)
    n, c, h, w = x.shape
    p = patch_size
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def check_protocols(protocols) -> None:
    """Refuse an unknown probe protocol before any encoding, naming it and the known ones."""
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown probe protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")


def pool(tokens: torch.Tensor, protocol: str) -> torch.Tensor:
    """[N, T, D] tokens on a square grid -> [N, F] features for one probe protocol."""
    if protocol == "avg":
        return tokens.mean(1)
    if protocol == "flat":
        return tokens.flatten(1)
    if protocol == "avg+2x2":
        n, t, d = tokens.shape
        side = math.isqrt(t)
        grid = tokens.transpose(1, 2).reshape(n, d, side, side)
        quad = nn.functional.adaptive_avg_pool2d(grid, 2).flatten(1)
        return torch.cat([tokens.mean(1), quad], dim=1)
    raise ValueError(f"unknown probe protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
