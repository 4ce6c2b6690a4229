"""Collected episodes as labelled clips for the clip probes, with labels only the agent's motion answers:

    jepa probe --ckpt runs/two_rooms/video_encoder/checkpoints/last.ckpt \
        --data jepa_control.clip_labels.trajectory_clips --data_root runs/two_rooms/data

- `action` (inverse dynamics): the heading of the action taken between the clip's two middle frames, in 8 sectors
  of 45 degrees;
- `velocity`: the agent's displacement between the clip's last two frames (from the positions recorded at
  collection), 8 headings x 2 speeds split at the probe-training clips' median (a step blocked by a wall has no
  heading and falls in sector 0, slow).

Probe-training clips come from the training episodes (`<data_root>/train`), test clips from the held-out ones
(`<data_root>/val`, other layouts where collected with --eval_layouts); clips start every `STRIDE` frames and a
seeded subset is kept where there are more than the limit.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from data.shard_writer import INDEX_NAME
from eval.clip_probe import ClipProbeData
from jepa.errors import ConfigError
from jepa_control.collect import positions as xy, read_trajectories
from jepa_control.frames import TWO_ROOMS_MEAN, TWO_ROOMS_STD

HEADINGS = 8
STRIDE = 2
LABELS = ("action", "velocity")


def heading(vectors: torch.Tensor, sectors: int = HEADINGS) -> torch.Tensor:
    """[N, 2] (x, y) -> the sector of each vector's angle, sector 0 centred on +x, counting counter-clockwise."""
    angle = torch.atan2(vectors[:, 1], vectors[:, 0])
    width = 2 * math.pi / sectors
    return torch.floor(torch.remainder(angle + width / 2, 2 * math.pi) / width).long() % sectors


def episode_clips(path: Path, num_frames: int, size: int, limit: int, seed: int) -> tuple[torch.Tensor, dict]:
    """uint8 clips [N, T, C, H, W] of the episodes in `path` with their raw labels: the middle action [N, 2] and
    the last step's displacement [N, 2]."""
    data = read_trajectories(path)
    frames, actions, positions = data["frames"], data["actions"].float(), xy(data["proprio"]).float()
    episodes, steps = frames.shape[:2]
    if frames.shape[2] != size:
        raise ConfigError(f"{path}: frames are {frames.shape[2]}x{frames.shape[3]}, the encoder takes {size}x{size}")
    if steps < num_frames:
        raise ConfigError(f"{path}: episodes of {steps} frames are shorter than the encoder's {num_frames}-frame clips")
    starts = torch.tensor([(e, s) for e in range(episodes) for s in range(0, steps - num_frames + 1, STRIDE)])
    if limit and len(starts) > limit:
        keep = torch.randperm(len(starts), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        starts = starts[keep]
    e, s = starts[:, 0], starts[:, 1]
    offsets = torch.arange(num_frames)
    clips = frames[e[:, None], s[:, None] + offsets].permute(0, 1, 4, 2, 3).contiguous()
    middle = actions[e, s + num_frames // 2 - 1]
    last = positions[e, s + num_frames - 1] - positions[e, s + num_frames - 2]
    return clips, {"action": middle, "displacement": last}


def collected_env(path: Path) -> str | None:
    """The env `jepa collect` recorded in the shards' index (None for shards written without one)."""
    index = path / INDEX_NAME
    return json.loads(index.read_text()).get("env") if index.is_file() else None


def trajectory_clips(root: str | None = None, train_limit: int = 0, test_limit: int = 0, num_frames: int = 8,
                     size: int = 64, seed: int = 0, garment: int | None = None) -> ClipProbeData:
    """The labelled clips of an environment's collected episodes (`root`: the folder holding `train` and `val`
    trajectory shards); the signature of eval.clip_probe's clip datasets (`garment` is theirs, unused here)."""
    if root is None:
        raise ConfigError("--data_root: give the folder holding the environment's train/ and val/ trajectory shards")
    parts = {split: episode_clips(Path(root) / folder, num_frames, size, limit, seed)
             for split, folder, limit in (("train", "train", train_limit or 5000), ("test", "val", test_limit or 2000))}
    median = float(parts["train"][1]["displacement"].norm(dim=1).median())
    labels = {}
    for split, (_, raw) in parts.items():
        moved = raw["displacement"]
        fast = (moved.norm(dim=1) > median).long()
        labels[split] = {"action": heading(raw["action"]), "velocity": heading(moved) * 2 + fast}
    source = {"dataset": "trajectory_clips", "root": str(root), "env": collected_env(Path(root) / "train"),
              "num_frames": num_frames, "size": size, "seed": seed, "stride": STRIDE, "median_speed": median}
    # normalised as the control encoders are pretrained (the frame and clip datamodules' default)
    return ClipProbeData("trajectory_clips", parts["train"][0], labels["train"], parts["test"][0], labels["test"],
                         TWO_ROOMS_MEAN, TWO_ROOMS_STD, source)
