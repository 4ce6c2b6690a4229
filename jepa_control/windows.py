"""Training windows of collected episodes, for the world models: every run of `window` consecutive frames (frozen
latents, or raw frames for a model that trains its encoder) with the actions between them."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from data.workers import ignore_termination
from jepa.errors import ConfigError
from jepa_control.collect import check_trajectory_dir


class EpisodeWindows(Dataset):
    """Per-frame values [E, T, ...] and actions [E, T-1, A] -> item i: {key: values [W, ...], "actions" [W-1, A]}.
    With frameskip f > 1 a window's frames are f env steps apart and each of its actions is the f env actions
    between two of them, concatenated in order ([W-1, f * A]): a model step covers f env steps (DINO-WM's frameskip,
    inside the model). `positions` (the agent's recorded (x, y) per frame, [E, T, 2]) is kept for models that fit a
    read-out on the whole set, and each item carries its window's as "proprio" [W, P] (what a model with
    proprioception reads beside the frames; a pixel world model is handed the whole recorded proprio). `states`
    (the env's recorded true state per frame, [E, T, S]) goes into each item as "state" [W, S], for a model that
    learns a state read-out."""

    def __init__(self, key: str, values: torch.Tensor, actions: torch.Tensor, window: int,
                 positions: torch.Tensor | None = None, frameskip: int = 1,
                 states: torch.Tensor | None = None) -> None:
        e, t = values.shape[:2]
        if frameskip < 1:
            raise ConfigError(f"data.frameskip = {frameskip}: must be >= 1")
        span = (window - 1) * frameskip + 1  # env frames a window covers
        if span > t:
            raise ConfigError(f"data.window = {window} at frameskip {frameskip} covers {span} frames, longer than the "
                              f"episodes ({t} frames)")
        self.key, self.values, self.actions, self.window = key, values, actions.float(), window
        self.frameskip, self.span = frameskip, span
        self.positions, self.states, self.per_episode = positions, states, t - span + 1
        self.length = e * self.per_episode

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        e, s = divmod(i, self.per_episode)
        values, actions = model_steps(self.values[e, None, s : s + self.span],
                                      self.actions[e, None, s : s + self.span - 1], self.frameskip)
        item = {self.key: values[0], "actions": actions[0]}
        if self.positions is not None:
            item["proprio"] = self.positions[e, s : s + self.span : self.frameskip].float()
        if self.states is not None:
            item["state"] = self.states[e, s : s + self.span : self.frameskip].float()
        return item


def model_steps(values: torch.Tensor, actions: torch.Tensor, frameskip: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole episodes at a model's frameskip f: per-frame values [E, T, ...] and env actions [E, T-1, A] -> every
    f-th frame [E, S+1, ...] and the f env actions between two of them, concatenated [E, S, f * A]
    (S = (T-1) // f; a last incomplete model step is dropped)."""
    steps = actions.shape[1] // frameskip
    return (values[:, : steps * frameskip + 1 : frameskip],
            actions[:, : steps * frameskip].reshape(len(actions), steps, -1))


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
                          num_workers=self.num_workers, generator=torch.Generator().manual_seed(0),
                          worker_init_fn=ignore_termination)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers,
                          worker_init_fn=ignore_termination)
