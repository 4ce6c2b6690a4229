"""Exported encoders in timm's Hugging Face layout, loadable by timm, by huggingface_hub and without Lightning.

    <dir>/model.safetensors   the ViT's state dict under timm's names (patch_embed.proj, pos_embed, blocks.N, norm)
    <dir>/config.json         timm's keys (architecture, num_classes, num_features, global_pool, model_args,
                              pretrained_cfg with mean, std and input size) plus a `jepa` section: our format,
                              encoder arguments, pooling, normalisation, source and licence

An image encoder's folder loads with `timm.create_model("local-dir:DIR", pretrained=True)`; video (tubelet)
encoders have no timm equivalent and load with load_exported / jepa.checkpoint.load_encoder. Folders written
before this layout (encoder.safetensors + a config.json whose `format` is jepa-encoder/1) still load.
"""
from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path

from torch import nn

from jepa.errors import ConfigError
from jepa.io import atomic_write, write_json
from jepa.vit import ENCODER_ARGS, VisionTransformer, encoder_args

FORMAT = "jepa-encoder/2"
LEGACY_FORMAT = "jepa-encoder/1"
WEIGHTS, LEGACY_WEIGHTS, CONFIG = "model.safetensors", "encoder.safetensors", "config.json"
TIMM_SIZES = {(192, 12, 3): "tiny", (384, 12, 6): "small", (768, 12, 12): "base", (1024, 24, 16): "large",
              (1280, 32, 16): "huge"}


def check_normalisation(mean, std, channels: int) -> dict | None:
    """{"mean", "std"} as lists when both are given with one finite value per channel (std > 0); None when neither."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ConfigError(f"--mean and --std go together: got only --{'mean' if std is None else 'std'}")
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ConfigError(f"--{name} has {len(values)} values but the encoder takes {channels} channel"
                              f"{'s' if channels > 1 else ''}: give one per channel")
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"--{name} {values} holds a non-finite value")
    if any(v <= 0 for v in std):
        raise ConfigError(f"--std {std} must be > 0 for every channel")
    return {"mean": mean, "std": std}


def recorded_normalisation(ckpt: dict) -> dict | None:
    """The input normalisation a checkpoint recorded: its datamodule's state (training runs) or the importer's."""
    for value in [ckpt.get("imported_from")] + list(ckpt.values()):
        if isinstance(value, dict) and isinstance(value.get("normalisation"), dict):
            return value["normalisation"]
    return None


def timm_model_args(encoder: VisionTransformer) -> dict:
    """timm VisionTransformer arguments that build the same network: no class token, average pooling, no head."""
    return {"img_size": encoder.img_size, "patch_size": encoder.patch_size, "in_chans": encoder.in_chans,
            "embed_dim": encoder.embed_dim, "depth": len(encoder.blocks), "num_heads": encoder.num_heads,
            "mlp_ratio": 4.0, "qkv_bias": True, "class_token": False, "global_pool": "avg", "fc_norm": False,
            "num_classes": 0}


def timm_architecture(encoder: VisionTransformer) -> str:
    """A registered timm name of the same family (model_args fix every size, so any ViT name builds it; the closest
    one reads best)."""
    import timm

    size = TIMM_SIZES.get((encoder.embed_dim, len(encoder.blocks), encoder.num_heads), "base")
    for name in (f"vit_{size}_patch{encoder.patch_size}_{encoder.img_size}",
                 f"vit_{size}_patch{encoder.patch_size}_224", "vit_base_patch16_224"):
        if timm.is_model(name):
            return name
    return "vit_base_patch16_224"


def export_config(encoder: VisionTransformer, source: dict, licence: str | None, normalisation: dict | None,
                  pooling: str = "avg") -> dict:
    ours = {"format": FORMAT,
            "args": encoder.architecture,
            "pooling": pooling, "normalisation": normalisation, "source": source, "licence": licence}
    if encoder.is_video or encoder.stem != "patch":  # no timm ViT has these layers
        return {"architecture": None, "jepa": ours}
    pretrained_cfg = {"input_size": [encoder.in_chans, encoder.img_size, encoder.img_size], "num_classes": 0,
                      "interpolation": "bicubic", "crop_pct": 1.0, "fixed_input_size": True,
                      "first_conv": "patch_embed.proj", "classifier": "head", "license": licence}
    if normalisation is not None:
        pretrained_cfg.update(normalisation)
    return {"architecture": timm_architecture(encoder), "num_classes": 0, "num_features": encoder.embed_dim,
            "global_pool": "avg", "model_args": timm_model_args(encoder), "pretrained_cfg": pretrained_cfg,
            "jepa": ours}


def export_encoder(encoder: VisionTransformer, out_dir: str | os.PathLike, source: dict, licence: str | None,
                   mean=None, std=None, pooling: str = "avg") -> Path:
    from safetensors.torch import save_file

    normalisation = check_normalisation(mean, std, encoder.in_chans)
    out = Path(out_dir)
    state = {k: v.detach().float().contiguous().cpu() for k, v in encoder.state_dict().items()}
    atomic_write(out / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    write_json(out / CONFIG, export_config(encoder, source, licence, normalisation, pooling))
    return out


def read_export_config(folder: Path) -> dict:
    """Our section of an export folder's config.json (either layout), checked."""
    config_path = folder / CONFIG
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{config_path} is not readable JSON ({type(err).__name__}: {err})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{config_path} holds a {type(config).__name__}, not an export config")
    ours = config.get("jepa", config)  # the legacy layout kept our keys at the top level
    if not isinstance(ours, dict) or ours.get("format") not in (FORMAT, LEGACY_FORMAT):
        found = ours.get("format") if isinstance(ours, dict) else None
        raise ConfigError(f"{config_path}: format {found!r} is not {FORMAT!r}: not an export of this project")
    missing = [k for k in ENCODER_ARGS if k not in (ours.get("args") or {})]
    if missing:
        raise ConfigError(f"{config_path}: args lack {missing}")
    return ours


def exported_weights(path: str | os.PathLike) -> Path:
    """The weights file of an export folder (either layout) or the file itself; ConfigError when it is not one."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        weights = next((folder / n for n in (WEIGHTS, LEGACY_WEIGHTS) if (folder / n).is_file()), None)
    else:
        weights = path if path.is_file() else None
    if weights is None or not (folder / CONFIG).is_file():
        raise ConfigError(f"{path} is not an exported encoder: {CONFIG} and {WEIGHTS} are needed in {folder}")
    return weights


def load_exported(path: str | os.PathLike) -> tuple[VisionTransformer, dict]:
    """(frozen encoder, our config section) from an export folder or its weights file; every key must match."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = exported_weights(path)
    config = read_export_config(weights.parent)
    encoder = VisionTransformer(**encoder_args(config["args"]))
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"{weights} is not a readable safetensors file ({err})") from None
    result = encoder.load_state_dict(state, strict=False)
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
    model = tv.VisionTransformer(**timm_model_args(encoder), norm_layer=partial(nn.LayerNorm, eps=1e-6))
    model.load_state_dict({k: v.clone() for k, v in encoder.state_dict().items()}, strict=True)
    return model.eval().requires_grad_(False)
