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
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    args = p.parse_args(argv)
    from jepa.interop import import_official, write_checkpoint
    from jepa.outputs import check_output_file

    check_output_file("--out", args.out, args.overwrite)
    ckpt = import_official(args.source, args.num_heads)
    out = write_checkpoint(ckpt, args.out)
    hp = ckpt["hyper_parameters"]
    video = f", {hp['num_frames']} frames, tubelet {hp['tubelet_size']}" if "num_frames" in hp else ""
    print(f"imported {ckpt['imported_from']['format']} {args.source}: ViT {hp['embed_dim']} x {hp['depth']} "
          f"({hp['num_heads']} heads, patch {hp['patch_size']}, {hp['img_size']} px{video}), predictor {hp['predictor_embed_dim']} x {hp['predictor_depth']}; "
          f"encoder, target_encoder and predictor loaded strictly -> {out}\nlicence: {ckpt['imported_from']['licence']}")
    return 0


def export_main(argv: list[str]) -> int:
    """encoder -> timm / Hugging Face folder: jepa export --ckpt CKPT --out DIR"""
    p = argparse.ArgumentParser(prog="jepa export", description=(
        "Write a checkpoint's encoder as <out>/model.safetensors + <out>/config.json in timm's Hugging Face layout: "
        "timm.create_model('local-dir:<out>', pretrained=True) builds it (image encoders), jepa.hub.JepaEncoder."
        "from_pretrained(<out>) and jepa.checkpoint.load_encoder(<out>) read it without Lightning. The input "
        "normalisation comes from the checkpoint's data when it recorded one, else give --mean and --std."))
    p.add_argument("--ckpt", required=True, help="checkpoint of this project (trained, supervised or imported)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--which", default="target_encoder", choices=["target_encoder", "encoder", "auto"])
    p.add_argument("--mean", type=float, nargs="+", default=None, help="input normalisation mean, per channel")
    p.add_argument("--std", type=float, nargs="+", default=None, help="input normalisation std, per channel")
    p.add_argument("--random_init", type=int, default=None, metavar="SEED",
                   help="export the same architecture at random init (seeded) instead of the trained weights: the "
                        "baseline every learned encoder stands beside")
    p.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --out folder")
    args = p.parse_args(argv)
    from jepa.checkpoint import load_checkpoint, load_encoder
    from jepa.errors import ConfigError
    from jepa.export import CONFIG, WEIGHTS, check_normalisation, export_encoder, recorded_normalisation
    from jepa.io import sha256_of
    from jepa.outputs import check_output_folder

    if Path(args.ckpt).is_dir():
        raise ConfigError(f"--ckpt {args.ckpt} is a folder; give a checkpoint file of this project")
    check_output_folder("--out", args.out, args.overwrite)
    ckpt = load_checkpoint(args.ckpt)
    encoder, hparams = load_encoder(args.ckpt, args.which, ckpt=ckpt)
    if args.random_init is not None:
        import torch

        from jepa.vit import VisionTransformer, encoder_args

        torch.manual_seed(args.random_init)
        encoder = VisionTransformer(**encoder_args(hparams)).eval().requires_grad_(False)
    given = check_normalisation(args.mean, args.std, encoder.in_chans)
    normalisation = given or recorded_normalisation(ckpt)
    if normalisation is None:
        raise ConfigError(f"--ckpt {args.ckpt} records no input normalisation: give --mean and --std "
                          f"({encoder.in_chans} value{'s' if encoder.in_chans > 1 else ''} each, the training data's)")
    imported = ckpt.get("imported_from") or {}
    source = {"checkpoint": str(args.ckpt), "sha256": sha256_of(args.ckpt), "which": args.which,
              "imported_from": imported or None, "random_init_seed": args.random_init}
    licence = imported.get("licence") or "none inherited: trained with this project (mind the training data's licence)"
    out = export_encoder(encoder, args.out, source, licence, normalisation["mean"], normalisation["std"])
    what = f"the architecture of {args.which} at random init (seed {args.random_init})" \
        if args.random_init is not None else args.which
    print(f"exported {what} of {args.ckpt} -> {Path(out) / WEIGHTS}, {Path(out) / CONFIG} (mean "
          f"{normalisation['mean']}, std {normalisation['std']})\nlicence: {licence}")
    return 0
