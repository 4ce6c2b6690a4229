"""Windows of raw frames and actions from collected trajectories, for a world model that trains its own encoder
(jepa_control/pixel_world_model.py): the frames stay uint8 in memory and are encoded at every step."""
from __future__ import annotations

import lightning as L
import torch

from jepa_control.collect import read_trajectories
from jepa_control.windows import EpisodeWindows, WindowLoaders, checked_dirs, same_length


class PixelTrajectoryDataModule(WindowLoaders, L.LightningDataModule):
    """Frame windows of the episodes in train_dir / val_dir (trajectory shards of `jepa collect`).

    Args:
        train_dir: trajectory shards for training; a list of folders is read as one set (same episode length).
        val_dir: trajectory shards for validation, optional.
        window: frames per training window (>= the model's context + 1 and rollout_history + rollout_steps).
        batch_size: windows per step.
        frameskip: env steps per model step: a window's frames are this many steps apart and its actions the env
            actions between them, concatenated (the model's action_dim is then frameskip x the env's).
        num_workers: dataloader workers (the data is in memory: 0 is fastest).
    """

    def __init__(self, train_dir: str | list[str], val_dir: str | None = None, window: int = 5, batch_size: int = 64,
                 frameskip: int = 1, num_workers: int = 0) -> None:
        super().__init__()
        self.train_dirs = checked_dirs(train_dir, val_dir)
        self.val_dir, self.window, self.batch_size, self.num_workers = val_dir, window, batch_size, num_workers
        self.frameskip = frameskip
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        parts = [read_trajectories(d) for d in self.train_dirs]
        same_length(parts)
        states = None if any(p["state"] is None for p in parts) else torch.cat([p["state"] for p in parts])
        self.train_set = EpisodeWindows("frames", torch.cat([p["frames"] for p in parts]),
                                        torch.cat([p["actions"] for p in parts]), self.window,
                                        torch.cat([p["proprio"] for p in parts]), self.frameskip, states)
        if self.val_dir:
            val = read_trajectories(self.val_dir)
            self.val_set = EpisodeWindows("frames", val["frames"], val["actions"], self.window, val["proprio"],
                                          self.frameskip, val["state"])
