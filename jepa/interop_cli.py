"""`jepa import` (official I-JEPA checkpoint -> our checkpoint) and `jepa export` (encoder -> safetensors + config)."""
from __future__ import annotations

import argparse
from pathlib import Path


def import_main(argv: list[str]) -> int:
    """convert an official I-JEPA checkpoint: jepa import SRC --out CKPT"""
    p = argparse.ArgumentParser(prog="jepa import", description=(
        "Convert an official I-JEPA or V-JEPA checkpoint (facebookresearch/ijepa, facebookresearch/jepa: encoder, "
        "predictor, target_encoder, ...) into a checkpoint of this project that `jepa probe` and `jepa export` read. "
        "Every key must map: a missing or unexpected key is an error. Official weights are CC-BY-NC 4.0; the "
        "licence travels with the checkpoint."))
    p.add_argument("source", help="official checkpoint, e.g. IN1K-vit.h.14-300e.pth.tar or vitl16.pth.tar")
    p.add_argument("--out", required=True, help="checkpoint to write (.ckpt)")
    p.add_argument("--num_heads", type=int, default=None,
                   help="attention heads (read from the standard ViT sizes when omitted; needed for others)")
    args = p.parse_args(argv)
    from jepa.interop import import_official, write_checkpoint

    ckpt = import_official(args.source, args.num_heads)
    out = write_checkpoint(ckpt, args.out)
    hp = ckpt["hyper_parameters"]
    video = f", {hp['num_frames']} frames, tubelet {hp['tubelet_size']}" if "num_frames" in hp else ""
    print(f"imported {ckpt['imported_from']['format']} {args.source}: ViT {hp['embed_dim']} x {hp['depth']} "
          f"({hp['num_heads']} heads, patch {hp['patch_size']}, {hp['img_size']} px{video}), predictor {hp['predictor_embed_dim']} x {hp['predictor_depth']}; "
          f"encoder, target_encoder and predictor loaded strictly -> {out}\nlicence: {ckpt['imported_from']['licence']}")
    return 0


def export_main(argv: list[str]) -> int:
    """encoder -> safetensors + config.json: jepa export --ckpt CKPT --out DIR"""
    p = argparse.ArgumentParser(prog="jepa export", description=(
        "Write a checkpoint's encoder as <out>/encoder.safetensors + <out>/config.json: loadable with "
        "jepa.checkpoint.load_encoder(out) without Lightning, and as a timm VisionTransformer via jepa.export.to_timm."))
    p.add_argument("--ckpt", required=True, help="checkpoint of this project (trained, supervised or imported)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--which", default="target_encoder", choices=["target_encoder", "encoder", "auto"])
    p.add_argument("--mean", type=float, nargs="+", default=None, help="input normalisation mean, per channel")
    p.add_argument("--std", type=float, nargs="+", default=None, help="input normalisation std, per channel")
    args = p.parse_args(argv)
    from jepa.checkpoint import load_checkpoint, load_encoder
    from jepa.export import export_encoder
    from jepa.io import sha256_of

    encoder, _ = load_encoder(args.ckpt, args.which)
    imported = load_checkpoint(args.ckpt).get("imported_from") or {}
    source = {"checkpoint": str(args.ckpt), "sha256": sha256_of(args.ckpt), "which": args.which,
              "imported_from": imported or None}
    licence = imported.get("licence") or "none inherited: trained with this project (mind the training data's licence)"
    out = export_encoder(encoder, args.out, source, licence, args.mean, args.std)
    print(f"exported {args.which} of {args.ckpt} -> {Path(out) / 'encoder.safetensors'}, {Path(out) / 'config.json'}"
          f"\nlicence: {licence}")
    return 0
