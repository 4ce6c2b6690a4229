"""Loading our checkpoints safely: weights_only=True, wrapper prefixes stripped, every key accounted for."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from jepa.errors import ConfigError
from jepa.safe_load import safe_load
from jepa.vit import ENCODER_ARGS, VisionTransformer, encoder_args

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP (`module.`) and torch.compile (`_orig_mod.`) wrappers wherever they appear in a key."""
    out = {}
    for key, value in state.items():
        for prefix in WRAPPER_PREFIXES:
            key = key.replace(prefix, "")
        out[key] = value
    return out


def load_checkpoint(path: str | os.PathLike) -> dict:
    return safe_load(path)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that names every missing and unexpected key instead of loading part of a model."""
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"{source} does not match the model: missing keys {result.missing_keys[:8]}"
            f"{' ...' if len(result.missing_keys) > 8 else ''}, unexpected keys {result.unexpected_keys[:8]}"
            f"{' ...' if len(result.unexpected_keys) > 8 else ''}"
        )


def load_encoder(path: str | os.PathLike, which: str = "target_encoder",
                 ckpt: dict | None = None) -> tuple[VisionTransformer, dict]:
    """The frozen encoder (`target_encoder` by default, or `encoder`; `auto`: the target encoder if there is one)
    of a checkpoint of this project (JEPA, supervised or imported), rebuilt from the checkpoint's hyperparameters,
    or of an export folder / .safetensors file of `jepa export`; returns (encoder, hyperparameters): the module's,
    plus `data`, the datamodule's saved ones (empty when it saved none, and for exports). `ckpt`: the checkpoint
    already read from `path`, so a caller that needs more of it reads the file once. The hyperparameters also hold
    `normalisation`, the input normalisation the checkpoint or export recorded ({mean, std}, or None)."""
    if which not in ("target_encoder", "encoder", "auto"):
        raise ConfigError(f"which encoder: use 'target_encoder', 'encoder' or 'auto', got {which!r}")
    if Path(path).is_dir() or str(path).endswith(".safetensors"):  # an export of `jepa export`
        from jepa.export import load_exported

        encoder, config = load_exported(path)
        return encoder, {**config["args"], "data": {}, "normalisation": config.get("normalisation")}
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path} is not a Lightning checkpoint of this project (it holds a {type(ckpt).__name__})")
    hparams = ckpt.get("hyper_parameters") or {}
    missing = [k for k in ENCODER_ARGS if k not in hparams]
    if "state_dict" not in ckpt or missing:
        raise ConfigError(
            f"{path} is not a Lightning checkpoint of this project: "
            + ("no state_dict" if "state_dict" not in ckpt else f"its hyper_parameters lack {missing}")
        )
    if which == "auto":
        has_target = any(k.startswith("target_encoder.") for k in strip_prefixes(ckpt["state_dict"]))
        which = "target_encoder" if has_target else "encoder"
    encoder = VisionTransformer(**encoder_args(hparams))
    prefix = which + "."
    state = {k[len(prefix):]: v for k, v in strip_prefixes(ckpt["state_dict"]).items() if k.startswith(prefix)}
    load_strict(encoder, state, f"{path} [{which}]")
    from jepa.export import recorded_normalisation

    data = dict(ckpt.get("datamodule_hyper_parameters") or {})
    normalisation = recorded_normalisation(ckpt)
    return encoder.eval().requires_grad_(False), {**hparams, "data": data, "normalisation": normalisation}
