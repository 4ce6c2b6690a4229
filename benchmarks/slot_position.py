"""Does each time slot know where the moving garment is? Ridge R^2 of the garment's centre (x, y) in each time slot of
motion clips, read from that slot's pooled features alone (the clip probes' own pooling: `avg` over space, and
`avg+2x2`, which keeps coarse position), fitted on probe-training clips and scored on test clips, for each encoder
and its random init. A linear probe reads motion from the concatenated slots only if the slots carry position.

    python benchmarks/slot_position.py runs/vjepa_motion_fmnist/checkpoints/last.ckpt --clips 1000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from eval.clip_probe import clip_tokens, labelled_splits, time_pooled, time_slots  # noqa: E402
from eval.probe import random_init_row  # noqa: E402
from jepa.checkpoint import load_encoder  # noqa: E402
from jepa_control.gate import ridge_r2  # noqa: E402

PROTOCOLS = ("avg", "avg+2x2")


def slot_centres(paths: torch.Tensor, num_frames: int, slots: int, garment: int) -> torch.Tensor:
    """Top-left corners [N, >= T, 2] of a clip's garment -> its centre in each time slot [N, S, 2], averaged over the
    slot's frames (a tubelet spans several)."""
    centres = paths[:, :num_frames].double() + garment / 2
    return centres.view(len(paths), slots, num_frames // slots, 2).mean(2)


def per_slot_r2(train_f: torch.Tensor, train_c: torch.Tensor, test_f: torch.Tensor, test_c: torch.Tensor) -> list:
    """Slot features [N, S, F] and centres [N, S, 2] -> the held-out ridge R^2 of each slot, read from its own
    features (ridge weight chosen on the last fifth of the training clips)."""
    return [round(ridge_r2(train_f[:, s], train_c[:, s], test_f[:, s], test_c[:, s])["r2"], 3)
            for s in range(train_f.shape[1])]


def motion_clip_paths(train: int, test: int, num_frames: int = 8, size: int = 64):
    """The clip probes' motion clips (data.motion_clips, seed 0: probe-training clips at offset 1000, test clips at
    0) with every clip's garment path: {split: (uint8 clips [n, T, 1, H, W], corners [n, T + future, 2])}."""
    from data.fashion_mnist import MEAN, STD
    from data.motion_clips import MotionClips
    from data.moving_fmnist import GARMENT

    parts, _ = labelled_splits(None, train, test, lambda images, classes, n, offset: MotionClips(
        images, classes, "eval", n, num_frames, size, seed=offset, garment=GARMENT), ("path",))
    return {split: (clips, labels["path"]) for split, (clips, labels) in parts.items()}, MEAN, STD, GARMENT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+", help="`jepa fit` checkpoints (video or image encoders) of motion-clip runs")
    p.add_argument("--clips", type=int, default=1000, help="probe-training clips, and as many test clips")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init row of each architecture")
    args = p.parse_args()
    parts, mean, std, garment = motion_clip_paths(args.clips, args.clips)
    num_frames = parts["train"][0].shape[1]
    for ckpt in args.ckpts:
        encoder, hparams = load_encoder(ckpt)
        slots = time_slots(encoder, num_frames)
        row = {"ckpt": ckpt, "slots": slots}
        for name, enc in (("target", encoder), ("random_init", random_init_row(hparams, args.seed).encoder)):
            tokens = {split: clip_tokens(enc, clips, mean, std, progress=False) for split, (clips, _) in parts.items()}
            centres = {split: slot_centres(paths, num_frames, slots, garment) for split, (_, paths) in parts.items()}
            for protocol in PROTOCOLS:
                f = {split: time_pooled(t, slots, protocol).view(len(t), slots, -1) for split, t in tokens.items()}
                row[f"{name}/{protocol}"] = per_slot_r2(f["train"], centres["train"], f["test"], centres["test"])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
