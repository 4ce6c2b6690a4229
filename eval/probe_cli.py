"""`jepa probe`: linear probes of a checkpoint's frozen encoder beside random init and raw pixels."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eval.features import PROTOCOLS
from eval.probe import frozen_copy, markdown_table, probe_encoders
from jepa.checkpoint import ENCODER_ARGS, load_encoder
from jepa.io import write_json, write_text
from jepa.provenance import provenance
from jepa.vit import VisionTransformer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepa probe", description=__doc__)
    p.add_argument("--ckpt", required=True, help="JEPA Lightning checkpoint (.ckpt) to probe")
    p.add_argument("--which", default="target_encoder", choices=["target_encoder", "encoder"],
                   help="which encoder of the checkpoint to freeze (default: the EMA target encoder)")
    p.add_argument("--protocols", default="avg,flat", help=f"comma-separated, from: {', '.join(PROTOCOLS)}")
    p.add_argument("--data_root", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--train_limit", type=int, default=0, help="probe on the first N training images (0: all 60k)")
    p.add_argument("--test_limit", type=int, default=0, help="score the first N test images (0: all 10k)")
    p.add_argument("--out", default=None, help="folder for results.json and results.md (default: beside the ckpt)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init row's weights")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    started = time.time()
    encoder, hparams = load_encoder(args.ckpt, args.which)
    torch.manual_seed(args.seed)
    random_init = VisionTransformer(**{k: hparams[k] for k in ENCODER_ARGS})
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    rows = probe_encoders(
        {"jepa": frozen_copy(encoder), "random init": frozen_copy(random_init), "raw pixels": None},
        hparams["patch_size"], protocols, args.data_root, args.train_limit, args.test_limit,
    )
    out = Path(args.out or Path(args.ckpt).parent)
    table = markdown_table(rows, protocols)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", {"checkpoint": str(args.ckpt), "encoder": args.which, "rows": rows,
                                      "wall_time_s": round(time.time() - started, 1), "provenance": provenance()})
    print(table)
    return 0
