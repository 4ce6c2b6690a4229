"""Collected trajectories as video clips, so `jepa fit` can pretrain a V-JEPA encoder on what the agent sees
(configs/control/two_rooms_video_encoder.yaml), for the world model to plan with (docs/control.md, "Encoders").

A clip is `num_frames` consecutive frames of one episode; clips start every `stride` frames. The frames are held in
memory as uint8, as TrajectoryFramesDataModule holds them.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from data.resumable import ResumableDataModule
from data.transforms import eval_transform
from jepa.errors import ConfigError
from jepa_control.collect import read_trajectories
from jepa_control.frames import TWO_ROOMS_MEAN, TWO_ROOMS_STD


class TrajectoryClips(Dataset):
    """frames uint8 [E, T+1, H, W, C] -> items (clip [num_frames, C, H, W], episode, index), transformed by
    `transform` when given."""

    def __init__(self, frames: torch.Tensor, num_frames: int, stride: int, transform=None) -> None:
        steps = frames.shape[1]
        if not 1 <= num_frames <= steps or stride < 1:
            raise ConfigError(f"clips of {num_frames} frames every {stride} need 1 <= num_frames <= the episodes' "
                              f"{steps} frames and stride >= 1")
        self.frames, self.num_frames, self.transform = frames, num_frames, transform
        self.starts = [(e, s) for e in range(len(frames)) for s in range(0, steps - num_frames + 1, stride)]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        e, s = self.starts[i]
        clip = self.frames[e, s : s + self.num_frames].permute(0, 3, 1, 2)
        return (self.transform(clip) if self.transform else clip), e, i


class TrajectoryClipsDataModule(ResumableDataModule):
    """Clips of the episodes in `train_dir` (trajectory shards of `jepa collect`) for V-JEPA.

    Args:
        train_dir: folder of trajectory shards for training.
        val_dir: optional folder of trajectory shards for validation.
        num_frames: frames per clip (linked from model.num_frames by `jepa fit`).
        size: frame side (linked from model.img_size; must match the collected frames).
        stride: frames between the starts of two clips of one episode.
        batch_size: clips per device and step.
        num_workers: dataloader worker processes.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        seed: epoch order seed.
    """

    def __init__(self, train_dir: str, val_dir: str | None = None, num_frames: int = 8, size: int = 64,
                 stride: int = 4, batch_size: int = 32, num_workers: int = 1,
                 mean: tuple[float, ...] = TWO_ROOMS_MEAN, std: tuple[float, ...] = TWO_ROOMS_STD,
                 seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.train_dir, self.val_dir, self.num_frames, self.size, self.stride = train_dir, val_dir, num_frames, size, stride
        self.batch_size, self.num_workers, self.seed, self.mean, self.std = batch_size, num_workers, seed, mean, std
        self.normalisation = {"mean": list(mean), "std": list(std)}  # saved with checkpoints, read by `jepa export`
        self.train_set = self.val_set = None

    def _clips(self, path: str, transform=None) -> TrajectoryClips:
        frames = read_trajectories(path)["frames"]
        if frames.shape[2] != self.size:
            raise ConfigError(f"{path}: frames are {frames.shape[2]}x{frames.shape[3]}, the model takes "
                              f"{self.size}x{self.size} (model.img_size)")
        return TrajectoryClips(frames, self.num_frames, self.stride, transform)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._clips(self.train_dir)
            self.val_set = self._clips(self.val_dir, eval_transform(self.mean, self.std)) if self.val_dir else None

    def train_dataloader(self) -> DataLoader:
        # torchvision's v2 transforms take [..., C, H, W]: a clip [T, C, H, W] is normalised frame by frame
        return self.train_loader(self.train_set, eval_transform(self.mean, self.std), self.batch_size,
                                 self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set, self.batch_size, self.num_workers) if self.val_set else []
