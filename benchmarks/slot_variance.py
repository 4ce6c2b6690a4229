"""How alike are a clip's time slots under an encoder? Of the variance of the slot-pooled features the clip probes read
(each slot's tokens averaged over space, each slot centred over the clips so that its constant, e.g. its time
embedding, is no signal), the share that lies between the slots of one clip; the rest lies between clips. A linear
probe reads motion from concatenated slots only where they differ with the moving object.

    python benchmarks/slot_variance.py runs/vjepa_motion_fmnist/checkpoints/last.ckpt --clips 500
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.slot_rows import slot_rows  # noqa: E402
from eval.clip_probe import motion_clips, time_pooled_features  # noqa: E402


def within_clip_share(features: torch.Tensor) -> float:
    """Slot features [N clips, S slots, D] -> the share of their variance between the slots of a clip (0: every slot
    of a clip alike, 1: clips alike and slots differ)."""
    f = features - features.mean(0, keepdim=True)
    within = f.var(1, unbiased=False).sum(-1).mean()
    total = f.flatten(0, 1).var(0, unbiased=False).sum()
    return float(within / total)


def measure(encoder, data, slots: int) -> dict:
    features = time_pooled_features(encoder, data.test_x, data.mean, data.std, progress=False)
    return {"within_clip_share": round(within_clip_share(features.view(len(features), slots, -1)), 3)}


if __name__ == "__main__":
    slot_rows(__doc__, 500, "motion test clips to measure on",
              lambda clips: motion_clips(train_limit=10, test_limit=clips), measure)
