"""Motion clips: moving Fashion-MNIST with labels that only motion answers, on backgrounds that are not empty.

One opaque garment moves over a static background, a smooth random texture with a clutter of dimmed garments on it
(so a masked target is never plain black and cannot be predicted from its position alone), with one of 16 headings
and one of 3 speeds, bouncing off the frame's borders. Every clip carries four labels:

- `class`: the moving garment's class (10);
- `motion`: its heading x speed between the last two frames (16 x 3 = 48 classes; after a bounce the reflected
  heading, which is again one of the 16);
- `bounce`: the first frame reached by a reflection off a border (1 .. T-1), 0 when the garment never touches one
  (T classes, drawn uniformly so that no class is rare);
- `future`: the cell of a 4 x 4 grid over the square the centre can reach, holding the garment's centre `future`
  frames after the clip's last one (16 classes; bounces continue past the clip). Predicting it needs position and
  velocity; `no_change_accuracy` says how often the last frame's cell is already right.

Clip i is a pure function of (seed, split, i), as in data.moving_fmnist.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.moving_fmnist import GARMENT, ClipFrames, MovingFashionMNISTDataModule, labelled_clips, resize_garments
from jepa.errors import ConfigError
from jepa.seeding import key_seed

HEADINGS = 16
SPEEDS = (1.0, 2.0, 3.0)          # pixels per frame
GRID = 4                          # the future cell's grid
SPLIT_KEYS = {"train": 11, "eval": 12}
CLUTTER_LEVEL = 0.4               # brightness of the static background garments
TEXTURE_RANGE, TEXTURE_GRID = (8.0, 48.0), 5  # a smooth random grey texture under them: no pixel is black
LABELS = ("class", "motion", "bounce", "future")
MAX_TRIES = 10_000
MONITOR_SEED_OFFSET = 2000        # the online monitor's clip stream, apart from the probes' (offsets 0 and 1000)


class MotionClips(Dataset):
    """Clips uint8 [T, 1, size, size] with the labels above; items (clip, class, motion, index), as
    MovingFashionMNIST's (clip, class, direction, index), so its datamodule and ClipFrames serve both.

    Args:
        images, labels: garments (uint8 [N, 1, 28, 28]) and their classes.
        split: "train" or "eval" (a different stream of clips; the garments are whatever split is passed).
        length: number of clips.
        num_frames: frames per clip.
        size: frame side in pixels.
        seed: the clips are a function of (seed, split, index).
        garment: garment side in pixels.
        clutter: static background garments per clip.
        future: frames after the clip's last whose position the `future` label gives.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, split: str = "train", length: int = 10_000,
                 num_frames: int = 8, size: int = 64, seed: int = 0, garment: int = GARMENT, clutter: int = 4,
                 future: int = 4) -> None:
        if split not in SPLIT_KEYS:
            raise ConfigError(f"motion clips split must be 'train' or 'eval', got {split!r}")
        if not 1 <= garment < size:
            raise ConfigError(f"motion clips need 1 <= garment < size, got garment {garment} and size {size}")
        if num_frames < 2 or future < 0 or clutter < 0:
            raise ConfigError(f"motion clips need num_frames >= 2, future >= 0 and clutter >= 0, got {num_frames}, "
                              f"{future} and {clutter}")
        if garment != images.shape[-1]:
            images = resize_garments(images, garment)
        self.images, self.labels = images[:, 0].numpy(), labels.numpy()
        self.split, self.length, self.num_frames, self.size = split, length, num_frames, size
        self.seed, self.garment, self.clutter, self.future = seed, garment, clutter, future

    def __len__(self) -> int:
        return self.length

    def trajectory(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(top-left corners [T + future, 2] as (x, y), velocities [T + future, 2], speed index, bounce label) with
        the bounce label drawn first and the start and velocity drawn until the path shows it."""
        room = self.size - self.garment
        want = int(rng.integers(self.num_frames))
        for _ in range(MAX_TRIES):
            heading, speed = int(rng.integers(HEADINGS)), int(rng.integers(len(SPEEDS)))
            path, velocity, first = bounce_path(rng.uniform(0, room, 2), heading, SPEEDS[speed], room,
                                                self.num_frames + self.future)
            if (first if first < self.num_frames else 0) == want:
                return path, velocity, speed, want
        raise ConfigError(f"no path bounces first at frame {want} in {MAX_TRIES} draws: the frame is too small for "
                          f"{self.garment}-px garments at these speeds")

    def clip(self, index: int, background: bool = True, extra_frames: int = 0) -> tuple[np.ndarray, dict]:
        """(frames uint8 [T, size, size], info): the four labels, `last_cell` (the cell at the last frame),
        `garment` (index into images) and `path` (the top-left corners, future frames included). For checks:
        background=False leaves out the clutter, extra_frames (<= future) renders frames past the clip's end."""
        rng = np.random.default_rng(key_seed(self.seed, SPLIT_KEYS[self.split], index))
        g = int(rng.integers(len(self.images)))
        path, velocity, speed, bounce = self.trajectory(rng)
        texture = rng.uniform(*TEXTURE_RANGE, (TEXTURE_GRID, TEXTURE_GRID)).astype(np.float32)
        base = np.asarray(Image.fromarray(texture).resize((self.size, self.size), Image.BILINEAR))
        base = base.round().astype(np.uint8) if background else np.zeros_like(base, np.uint8)
        clutter = rng.integers(len(self.images), size=self.clutter)
        corners = rng.integers(0, self.size - self.garment + 1, size=(self.clutter, 2))
        if background:
            for k, (x, y) in zip(clutter, corners):
                region = base[y : y + self.garment, x : x + self.garment]
                np.maximum(region, (self.images[k] * CLUTTER_LEVEL).astype(np.uint8), out=region)
        frames = np.repeat(base[None], self.num_frames + min(extra_frames, self.future), 0)
        garment, opaque = self.images[g], self.images[g] > 0
        for t in range(len(frames)):
            c, r = (int(round(v)) for v in path[t])
            region = frames[t, r : r + self.garment, c : c + self.garment]
            region[opaque] = garment[opaque]
        info = {"class": int(self.labels[g]), "motion": motion_label(velocity[self.num_frames - 1], speed),
                "bounce": bounce,
                "future": self.cell(path[-1]), "last_cell": self.cell(path[self.num_frames - 1]), "garment": g,
                "path": path}
        return frames, info

    def cell(self, corner: np.ndarray) -> int:
        """The cell (row-major) of a GRID x GRID grid over the centre's reachable square holding the centre."""
        room = self.size - self.garment
        col, row = (min(GRID - 1, int(v / room * GRID)) for v in corner)
        return row * GRID + col

    def __getitem__(self, index: int):
        frames, info = self.clip(index)
        return torch.from_numpy(frames).unsqueeze(1), info["class"], info["motion"], index


def bounce_path(start: np.ndarray, heading: int, speed: float, room: float,
                steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Corners [steps, 2] from `start` moving `speed` px per frame at heading * 2 pi / HEADINGS (y down, 0 = right,
    counter-clockwise), reflected at 0 and `room`; the velocity [steps, 2] each frame leaves with; and the first frame
    a reflection reached (steps if none)."""
    angle = 2 * math.pi * heading / HEADINGS
    pos, vel = start.astype(float).copy(), np.array([math.cos(angle), -math.sin(angle)]) * speed
    path, velocity, first = [pos.copy()], [vel.copy()], steps
    for t in range(1, steps):
        pos += vel
        for axis in range(2):
            if pos[axis] < 0 or pos[axis] > room:
                pos[axis] = -pos[axis] if pos[axis] < 0 else 2 * room - pos[axis]
                vel[axis] = -vel[axis]
                first = min(first, t)
        path.append(pos.copy())
        velocity.append(vel.copy())
    return np.stack(path), np.stack(velocity), first


def motion_label(velocity: np.ndarray, speed: int) -> int:
    """heading index x speed index of a velocity (x, y down) on one of the HEADINGS headings (reflections of
    one stay on them)."""
    heading = int(round(math.atan2(-velocity[1], velocity[0]) / (2 * math.pi) * HEADINGS)) % HEADINGS
    return heading * len(SPEEDS) + speed


class MotionClipsDataModule(MovingFashionMNISTDataModule):
    """MovingFashionMNISTDataModule's training and validation streams, made of motion clips (training-split
    garments for fit, test-split garments for val); `frames` gives their frames as images, for the frame-wise
    I-JEPA baseline. Extra arguments: clutter (static background garments per clip) and monitor_label (the label
    eval.monitors.OnlineProbe follows during pretraining, one of LABELS)."""

    def __init__(self, root: str | None = None, train_clips: int = 20_000, val_clips: int = 2_000,
                 num_frames: int = 8, size: int = 64, batch_size: int = 32, num_workers: int = 1, seed: int = 0,
                 frames: bool = False, garment: int = GARMENT, clutter: int = 4, monitor_label: str = "motion") -> None:
        super().__init__(root, train_clips, val_clips, num_frames, size, batch_size, num_workers, seed, frames,
                         garment)
        if monitor_label not in LABELS:
            raise ConfigError(f"data.monitor_label must be one of {', '.join(LABELS)}, got {monitor_label!r}")
        self.clutter, self.monitor_label = clutter, monitor_label
        self.save_hyperparameters("garment", "clutter")

    def monitor_data(self, n_fit: int, n_query: int, seed: int = 0):
        """Two disjoint labelled sets of uint8 clips [n, T, 1, H, W] of training-split garments for the online
        monitor, labelled with `monitor_label`; whole clips even when training on frames, so a V-JEPA run and its
        frame-wise baseline are followed on the same clips and label."""
        from data.fashion_mnist import load_split

        images, classes = load_split(self.root, "train")
        clips = MotionClips(images, classes, "eval", n_fit + n_query, self.num_frames, self.size,
                            self.seed + MONITOR_SEED_OFFSET + seed, garment=self.garment, clutter=self.clutter)
        x, labels = labelled_clips(clips, (self.monitor_label,))
        y = labels[self.monitor_label]
        return (x[:n_fit], y[:n_fit]), (x[n_fit:], y[n_fit:])

    def dataset(self, split: str, length: int) -> Dataset:
        from data.fashion_mnist import load_split

        images, labels = load_split(self.root, "train" if split == "train" else "test")
        clips = MotionClips(images, labels, split, length, self.num_frames, self.size, self.seed,
                            garment=self.garment, clutter=self.clutter)
        return ClipFrames(clips) if self.frames else clips


__all__ = ["LABELS", "MotionClips", "MotionClipsDataModule", "bounce_path", "motion_label"]
