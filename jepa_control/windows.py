"""Training windows of collected episodes, for the world models: every run of `window` consecutive frames (frozen
latents, or raw frames for a model that trains its encoder) with the actions between them."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from jepa.errors import ConfigError
from jepa_control.collect import check_trajectory_dir


class EpisodeWindows(Dataset):
    """Per-frame values [E, T, ...] and actions [E, T-1, A] -> item i: {key: values [W, ...], "actions" [W-1, A]}.
    `positions` (the agent's recorded (x, y) per frame, [E, T, 2]) is kept for models that fit a read-out on the
    whole set."""

    def __init__(self, key: str, values: torch.Tensor, actions: torch.Tensor, window: int,
                 positions: torch.Tensor | None = None) -> None:
        e, t = values.shape[:2]
        if window > t:
            raise ConfigError(f"data.window = {window} is longer than the episodes ({t} frames)")
        self.key, self.values, self.actions, self.window = key, values, actions.float(), window
        self.positions, self.per_episode = positions, t - window + 1
        self.length = e * self.per_episode

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        e, s = divmod(i, self.per_episode)
        w = self.window
        return {self.key: self.values[e, s : s + w], "actions": self.actions[e, s : s + w - 1]}


def checked_dirs(train_dir: str | list[str], val_dir: str | None) -> list[str]:
    """The training folders as a list (one folder or several read as one set), each folder and val_dir checked, so
    that missing or unreadable data stops a datamodule at construction, before any compute."""
    train_dirs = [train_dir] if isinstance(train_dir, (str, Path)) else list(train_dir)
    for folder in train_dirs + ([val_dir] if val_dir else []):
        check_trajectory_dir(folder)
    return train_dirs


def same_length(parts: list[dict]) -> None:
    """Episodes read from several training folders must have one length to be stacked."""
    lengths = {p["actions"].shape[1] for p in parts}
    if len(lengths) > 1:
        raise ConfigError(f"data.train_dir folders hold episodes of different lengths {sorted(lengths)}: collect them "
                          "with the same --steps")


class WindowLoaders:
    """train / val loaders of a datamodule's `train_set` / `val_set` (EpisodeWindows, held in memory)."""

    train_set: Dataset | None
    val_set: Dataset | None
    batch_size: int
    num_workers: int

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
