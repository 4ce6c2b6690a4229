"""Official I-JEPA and V-JEPA checkpoints in, our checkpoints out.

Both official training scripts save {encoder, predictor, target_encoder, opt, scaler, epoch, loss, batch_size,
world_size, lr}, each model's keys prefixed `module.` (DDP) and, for V-JEPA, `backbone.` (its multi-mask wrappers).
Their ViT and predictor parameter names are ours (jepa/vit.py follows them), so the mapping is: strip the
wrappers, infer the architecture from the shapes (for V-JEPA also from the stored 3-D sin-cos table, which alone
tells the time x space split of the tokens and uniform_power), and load every module strictly: a missing or
unexpected key is an error, never a partial load. The heads of a non-standard width / depth cannot be read from the
weights and must be given.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from jepa.checkpoint import load_checkpoint, load_strict, strip_prefixes
from jepa.errors import ConfigError
from jepa.io import atomic_write, sha256_of
from jepa.pos_embed import sincos_3d
from jepa.vit import VIT_SIZES, Predictor, VisionTransformer

OFFICIAL_KEYS = ("encoder", "predictor", "target_encoder")
LICENCE = "CC-BY-NC-4.0 (official I-JEPA weights and code, facebookresearch/ijepa)"
VJEPA_LICENCE = "CC-BY-NC-4.0 (official V-JEPA weights and code, facebookresearch/jepa)"
# the official training code normalises inputs with ImageNet's statistics (its make_transforms defaults)
OFFICIAL_NORMALISATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _count_blocks(state: dict, prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    if ids != set(range(len(ids))):
        raise ConfigError(f"block indices under {prefix!r} are not 0..N-1: {sorted(ids)}")
    return len(ids)


def _heads(dim: int, depth: int, num_heads: int | None) -> int:
    if num_heads is not None:
        return num_heads
    known = {(d, n): h for d, n, h in VIT_SIZES.values()}
    if (dim, depth) not in known:
        raise ConfigError(f"encoder width {dim} x depth {depth} is not a standard ViT size: pass num_heads")
    return known[(dim, depth)]


def infer_ijepa_hparams(encoder: dict, predictor: dict, num_heads: int | None = None) -> dict:
    """Architecture of an official encoder / predictor pair from tensor shapes (heads from the standard sizes)."""
    try:
        dim, chans, patch, _ = encoder["patch_embed.proj.weight"].shape
        tokens = encoder["pos_embed"].shape[1]
        pred_dim = predictor["predictor_embed.weight"].shape[0]
    except KeyError as err:
        raise ConfigError(f"not an official I-JEPA ViT: no {err.args[0]!r} in its weights") from None
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ConfigError(f"pos_embed has {tokens} tokens, not a square grid")
    depth = _count_blocks(encoder, "blocks.")
    num_heads = _heads(dim, depth, num_heads)
    return {"img_size": grid * patch, "patch_size": patch, "in_chans": chans, "embed_dim": dim, "depth": depth,
            "num_heads": num_heads, "predictor_embed_dim": pred_dim,
            "predictor_depth": _count_blocks(predictor, "predictor_blocks.")}


def infer_vjepa_hparams(encoder: dict, predictor: dict, num_heads: int | None = None) -> dict:
    """Architecture of an official V-JEPA encoder / predictor pair from shapes and the stored 3-D sin-cos table."""
    try:
        dim, chans, tubelet, patch, _ = encoder["patch_embed.proj.weight"].shape
        pos = encoder["pos_embed"][0]
        pred_dim = predictor["predictor_embed.weight"].shape[0]
    except KeyError as err:
        raise ConfigError(f"not an official V-JEPA ViT: no {err.args[0]!r} in its weights") from None
    tokens = pos.shape[0]
    layout = None
    for grid in range(1, math.isqrt(tokens) + 1):
        if tokens % (grid * grid):
            continue
        for uniform in (True, False):
            try:
                table = sincos_3d(dim, tokens // (grid * grid), grid, grid, uniform)
            except ValueError:
                continue
            if torch.allclose(table, pos.float(), atol=1e-5):
                layout = (tokens // (grid * grid), grid, uniform)
    if layout is None:
        raise ConfigError(f"the encoder's pos_embed ({tokens} tokens) is no 3-D sin-cos table of a square grid")
    grid_t, grid, uniform = layout
    depth = _count_blocks(encoder, "blocks.")
    return {"img_size": grid * patch, "patch_size": patch, "num_frames": grid_t * tubelet, "tubelet_size": tubelet,
            "uniform_power": uniform, "in_chans": chans, "embed_dim": dim, "depth": depth,
            "num_heads": _heads(dim, depth, num_heads), "predictor_embed_dim": pred_dim,
            "predictor_depth": _count_blocks(predictor, "predictor_blocks."),
            "num_mask_tokens": _count_blocks(predictor, "mask_tokens.")}


def _official_states(path, ckpt) -> dict:
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in OFFICIAL_KEYS):
        found = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConfigError(f"{path} is not an official I-JEPA / V-JEPA checkpoint: it needs the keys "
                          f"{list(OFFICIAL_KEYS)}, found {found}")
    states = {}
    for key in OFFICIAL_KEYS:
        state = strip_prefixes(ckpt[key])
        if all(k.startswith("backbone.") for k in state):  # V-JEPA's MultiMaskWrapper / PredictorMultiMaskWrapper
            state = {k[len("backbone."):]: v for k, v in state.items()}
        states[key] = state
    return states


def _strict_encoders(path, states: dict, enc_args: dict) -> dict:
    """encoder.* and target_encoder.* of our layout, each official state loaded strictly into our ViT."""
    state_dict = {}
    for key in ("encoder", "target_encoder"):
        module = VisionTransformer(**enc_args)
        load_strict(module, states[key], f"{path} [{key}]")
        state_dict.update({f"{key}.{k}": v for k, v in module.state_dict().items()})
    return state_dict


def import_official(path: str | os.PathLike, num_heads: int | None = None) -> dict:
    """An official I-JEPA or V-JEPA checkpoint (told apart by its Conv2d / Conv3d patch embedding) in our layout."""
    ckpt = load_checkpoint(path)
    states = _official_states(path, ckpt)
    weight = states["encoder"].get("patch_embed.proj.weight")
    if weight is not None and weight.dim() == 5:
        return import_official_vjepa(path, num_heads, ckpt)
    return import_official_ijepa(path, num_heads, ckpt)


def import_official_vjepa(path: str | os.PathLike, num_heads: int | None = None, ckpt: dict | None = None) -> dict:
    """Read an official V-JEPA checkpoint into our checkpoint layout (see import_official_ijepa)."""
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    states = _official_states(path, ckpt)
    hp = infer_vjepa_hparams(states["encoder"], states["predictor"], num_heads)
    enc_args = {k: hp[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                                   "num_frames", "tubelet_size", "uniform_power")}
    state_dict = _strict_encoders(path, states, enc_args)
    predictor = Predictor(hp["img_size"] // hp["patch_size"], hp["embed_dim"], hp["predictor_embed_dim"],
                          hp["predictor_depth"], hp["num_heads"], grid_t=hp["num_frames"] // hp["tubelet_size"],
                          uniform_power=hp["uniform_power"], num_mask_tokens=hp["num_mask_tokens"])
    load_strict(predictor, states["predictor"], f"{path} [predictor]")
    state_dict.update({f"predictor.{k}": v for k, v in predictor.state_dict().items()})
    return {"state_dict": state_dict, "hyper_parameters": hp,
            "imported_from": {"path": str(path), "sha256": sha256_of(path), "format": "official V-JEPA",
                              "epoch": ckpt.get("epoch"), "licence": VJEPA_LICENCE,
                              "normalisation": OFFICIAL_NORMALISATION}}


def import_official_ijepa(path: str | os.PathLike, num_heads: int | None = None, ckpt: dict | None = None) -> dict:
    """Read an official I-JEPA checkpoint into our checkpoint layout: {"state_dict": {encoder., target_encoder.,
    predictor. keys}, "hyper_parameters": {...}, "imported_from": {...}}, every module loaded strictly."""
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    states = _official_states(path, ckpt)
    hp = infer_ijepa_hparams(states["encoder"], states["predictor"], num_heads)
    enc_args = {k: hp[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")}
    state_dict = _strict_encoders(path, states, enc_args)
    predictor = Predictor(hp["img_size"] // hp["patch_size"], hp["embed_dim"], hp["predictor_embed_dim"],
                          hp["predictor_depth"], hp["num_heads"])
    load_strict(predictor, states["predictor"], f"{path} [predictor]")
    state_dict.update({f"predictor.{k}": v for k, v in predictor.state_dict().items()})
    return {"state_dict": state_dict, "hyper_parameters": hp,
            "imported_from": {"path": str(path), "sha256": sha256_of(path), "format": "official I-JEPA",
                              "epoch": ckpt.get("epoch"), "licence": LICENCE,
                              "normalisation": OFFICIAL_NORMALISATION}}


def write_checkpoint(ckpt: dict, out: str | os.PathLike) -> Path:
    return atomic_write(out, lambda tmp: torch.save(ckpt, tmp))
