"""Does each time slot know where the moving garment is? Ridge R^2 of the garment's centre (x, y) in each time slot of
motion clips, read from that slot's pooled features alone (the clip probes' own pooling: `avg` over space, and
`avg+2x2`, which keeps coarse position), fitted on probe-training clips and scored on test clips, for each encoder
and its random init. A linear probe reads motion from the concatenated slots only if the slots carry position.

    python benchmarks/slot_position.py runs/vjepa_motion_fmnist/checkpoints/last.ckpt --clips 1000
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.slot_rows import slot_rows  # noqa: E402
from eval.clip_probe import clip_tokens, motion_clips, time_pooled  # noqa: E402
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


def measure(encoder, data, slots: int) -> dict:
    num_frames, garment = data.train_x.shape[1], data.source["garment"]
    splits = {"train": (data.train_x, data.extras["train"]["path"]), "test": (data.test_x, data.extras["test"]["path"])}
    tokens = {split: clip_tokens(encoder, clips, data.mean, data.std, progress=False)
              for split, (clips, _) in splits.items()}
    centres = {split: slot_centres(paths, num_frames, slots, garment) for split, (_, paths) in splits.items()}
    row = {}
    for protocol in PROTOCOLS:
        f = {split: time_pooled(t, slots, protocol).view(len(t), slots, -1) for split, t in tokens.items()}
        row[protocol] = per_slot_r2(f["train"], centres["train"], f["test"], centres["test"])
    return row


if __name__ == "__main__":
    # the clip probes' motion clips (seed 0), with each clip's garment path
    slot_rows(__doc__, 1000, "probe-training clips, and as many test clips",
              lambda clips: motion_clips(train_limit=clips, test_limit=clips, extra=("path",)), measure)
