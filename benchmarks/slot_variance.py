"""How alike are a clip's time slots under an encoder? Of the variance of the slot-pooled features the clip probes read
(each slot's tokens averaged over space, each slot centred over the clips so that its constant, e.g. its time
embedding, is no signal), the share that lies between the slots of one clip; the rest lies between clips. A linear
probe reads motion from concatenated slots only where they differ with the moving object.

    python benchmarks/slot_variance.py runs/vjepa_motion_fmnist/checkpoints/last.ckpt --clips 500
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from eval.clip_probe import motion_clips, time_pooled_features, time_slots  # noqa: E402
from eval.probe import random_init_row  # noqa: E402
from jepa.checkpoint import load_encoder  # noqa: E402


def within_clip_share(features: torch.Tensor) -> float:
    """Slot features [N clips, S slots, D] -> the share of their variance between the slots of a clip (0: every slot
    of a clip alike, 1: clips alike and slots differ)."""
    f = features - features.mean(0, keepdim=True)
    within = f.var(1, unbiased=False).sum(-1).mean()
    total = f.flatten(0, 1).var(0, unbiased=False).sum()
    return float(within / total)


def slot_features(encoder, clips: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 clips [N, T, C, H, W] -> the clip probes' time-pooled features, one row per slot [N, S, D] (an image
    encoder's frame embedding is a constant per slot, which within_clip_share centres away)."""
    features = time_pooled_features(encoder, clips, mean, std, progress=False)
    return features.view(len(clips), time_slots(encoder, clips.shape[1]), -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+", help="`jepa fit` checkpoints (video or image encoders) of motion-clip runs")
    p.add_argument("--clips", type=int, default=500, help="motion test clips to measure on")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init row of each architecture")
    args = p.parse_args()
    data = motion_clips(train_limit=10, test_limit=args.clips)
    for ckpt in args.ckpts:
        encoder, hparams = load_encoder(ckpt)
        row = {"ckpt": ckpt, "slots": time_slots(encoder, data.test_x.shape[1])}
        for name, enc in (("target", encoder), ("random_init", random_init_row(hparams, args.seed).encoder)):
            row[name] = round(within_clip_share(slot_features(enc, data.test_x, data.mean, data.std)), 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
