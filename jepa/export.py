"""Exported encoders: safetensors weights + config.json, loadable without Lightning, and convertible to timm.

    <dir>/encoder.safetensors   the ViT's state dict (patch_embed.proj, pos_embed, blocks.N, norm): timm's names
    <dir>/config.json           format, architecture arguments, pooling, input normalisation, source, licence
"""
from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

from torch import nn

from jepa.errors import ConfigError
from jepa.io import atomic_write, write_json
from jepa.vit import ENCODER_ARGS, VIDEO_ARGS, VisionTransformer, encoder_args

FORMAT = "jepa-encoder/1"
WEIGHTS, CONFIG = "encoder.safetensors", "config.json"


def export_encoder(encoder: VisionTransformer, out_dir: str | os.PathLike, source: dict, licence: str | None,
                   mean=None, std=None, pooling: str = "avg") -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    state = {k: v.detach().float().contiguous().cpu() for k, v in encoder.state_dict().items()}
    atomic_write(out / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    config = {
        "format": FORMAT,
        "architecture": "VisionTransformer (no CLS token, fixed 2-D sin-cos pos_embed, pre-norm blocks, LayerNorm eps 1e-6)",
        "args": {**{k: getattr(encoder, k) for k in ENCODER_ARGS + VIDEO_ARGS if k != "depth"},
                 "depth": len(encoder.blocks)},
        "pooling": pooling,
        "normalisation": {"mean": list(mean), "std": list(std)} if mean is not None and std is not None else None,
        "source": source,
        "licence": licence,
    }
    write_json(out / CONFIG, config)
    return out


def load_exported(path: str | os.PathLike) -> tuple[VisionTransformer, dict]:
    """(frozen encoder, config) from an export folder or its encoder.safetensors; every key must match."""
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config_path, weights = folder / CONFIG, (folder / WEIGHTS if path.is_dir() else path)
    if not config_path.is_file() or not weights.is_file():
        raise ConfigError(f"{path} is not an exported encoder: {CONFIG} and {WEIGHTS} are needed in {folder}")
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT:
        raise ConfigError(f"{config_path}: format {config.get('format')!r} is not {FORMAT!r}")
    missing = [k for k in ENCODER_ARGS if k not in config.get("args", {})]
    if missing:
        raise ConfigError(f"{config_path}: args lack {missing}")
    encoder = VisionTransformer(**encoder_args(config["args"]))
    result = encoder.load_state_dict(load_file(str(weights)), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(f"{weights} does not match its config: missing {result.missing_keys[:8]}, "
                          f"unexpected {result.unexpected_keys[:8]}")
    return encoder.eval().requires_grad_(False), config


def to_timm(encoder: VisionTransformer) -> nn.Module:
    """The same network as a timm VisionTransformer (class_token=False, average pooling, fc_norm=False, no head):
    forward_features gives our tokens, forward their average. Image encoders only (timm has no tubelets)."""
    import timm.models.vision_transformer as tv

    if encoder.is_video:
        raise ConfigError("a video (tubelet) encoder has no timm VisionTransformer equivalent; use load_encoder")
    model = tv.VisionTransformer(
        img_size=encoder.img_size, patch_size=encoder.patch_size, in_chans=encoder.in_chans, num_classes=0,
        embed_dim=encoder.embed_dim, depth=len(encoder.blocks), num_heads=encoder.num_heads, mlp_ratio=4.0,
        qkv_bias=True, class_token=False, global_pool="avg", fc_norm=False,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
