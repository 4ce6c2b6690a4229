"""The command line and the loop the per-slot benchmarks share: for each checkpoint given, its encoder and the same
architecture at random init measured on the same motion clips, one JSON row per checkpoint."""
from __future__ import annotations

import argparse
import json
from typing import Callable

from eval.clip_probe import ClipProbeData, time_slots
from eval.probe import random_init_row
from jepa.checkpoint import load_encoder

# measure(encoder, data, slots) -> {key: figure}; each key lands in the row under "<target|random_init>/<key>"
Measure = Callable[[object, ClipProbeData, int], dict]


def slot_rows(description: str, default_clips: int, clips_help: str, load: Callable[[int], ClipProbeData],
              measure: Measure) -> None:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+", help="`jepa fit` checkpoints (video or image encoders) of motion-clip runs")
    p.add_argument("--clips", type=int, default=default_clips, help=clips_help)
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init row of each architecture")
    args = p.parse_args()
    data = load(args.clips)
    for ckpt in args.ckpts:
        encoder, hparams = load_encoder(ckpt)
        slots = time_slots(encoder, data.test_x.shape[1])
        row = {"ckpt": ckpt, "slots": slots}
        for name, enc in (("target", encoder), ("random_init", random_init_row(hparams, args.seed).encoder)):
            row.update({f"{name}/{key}": value for key, value in measure(enc, data, slots).items()})
        print(json.dumps(row), flush=True)
