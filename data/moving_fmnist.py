"""Moving Fashion-MNIST: a deterministic, offline video dataset for V-JEPA on a CPU.

Training clips: 1-3 garments from the training split (28 x 28 px, or resized to `garment` px), each with its own
random speed (1-3 px / frame) and heading, bouncing off the borders of a 64 x 64 frame (overlaps composed by the
brighter pixel). Evaluation clips: one garment from the test split moving at 2 px / frame in one of 8 directions,
always wholly inside the frame (no bounce), labelled with the garment's class and the direction. Clip i is a pure
function of (seed, split, i), so any worker, any process and any rerun sees the same clip.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from data.fashion_mnist import CLASSES, MEAN, STD, load_split
from data.resumable import ResumableDataModule
from jepa.errors import ConfigError
from jepa.seeding import key_seed

GARMENT = 28  # Fashion-MNIST's image side; `garment` resizes the garments
# direction k moves by (dx, dy) pixels per frame, y pointing down: 0 right, 1 up-right, 2 up, ... 7 down-right
DIRECTIONS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")
STEPS = tuple((round(math.cos(k * math.pi / 4)), -round(math.sin(k * math.pi / 4))) for k in range(8))
SPLIT_KEYS = {"train": 1, "eval": 2}


def resize_garments(images: torch.Tensor, side: int, chunk: int = 10_000) -> torch.Tensor:
    """uint8 [N, 1, h, w] -> uint8 [N, 1, side, side], bilinear (antialiased when shrinking); in chunks, so 60,000
    garments never need a float copy of the whole set."""
    out = [F.interpolate(part.float(), size=(side, side), mode="bilinear", align_corners=False,
                         antialias=side < part.shape[-1]).round_().clamp_(0, 255).to(torch.uint8)
           for part in images.split(chunk)]
    return torch.cat(out)


class MovingFashionMNIST(Dataset):
    """Clips uint8 [T, 1, size, size] with (garment class, direction) labels; direction is -1 for training clips.

    Args:
        images, labels: garments (uint8 [N, 1, 28, 28]) and their classes.
        split: "train" (1-3 bouncing garments) or "eval" (one garment, 8 directions, no bounce).
        length: number of clips.
        num_frames: frames per clip.
        size: frame side in pixels.
        seed: the clips are a function of (seed, split, index).
        speed: eval clips' pixels per frame along each moving axis.
        max_garments: most garments in a training clip.
        garment: garment side in pixels (None or 28: Fashion-MNIST's own; larger ones are upsampled bilinearly, so a
            garment fills more of the frame and of the patch grid).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, split: str = "train", length: int = 10_000,
                 num_frames: int = 16, size: int = 64, seed: int = 0, speed: int = 2, max_garments: int = 3,
                 garment: int | None = GARMENT) -> None:
        garment = GARMENT if garment is None else garment
        if split not in SPLIT_KEYS:
            raise ConfigError(f"moving Fashion-MNIST split must be 'train' or 'eval', got {split!r}")
        if garment < 1:
            raise ConfigError(f"moving Fashion-MNIST garment must be >= 1 px, got {garment}")
        room = size - garment
        if room < 0 or (split == "eval" and speed * (num_frames - 1) > room):
            raise ConfigError(f"a {size}px frame cannot hold {num_frames} frames of a garment moving {speed} px / frame "
                              f"without leaving it: raise size or lower garment, num_frames or speed")
        if garment != images.shape[-1]:
            images = resize_garments(images, garment)
        self.images, self.labels = images[:, 0].numpy(), labels.numpy()
        self.garment = garment
        self.split, self.length, self.num_frames, self.size = split, length, num_frames, size
        self.seed, self.speed, self.max_garments = seed, speed, max_garments

    def __len__(self) -> int:
        return self.length

    def _paste(self, frame: np.ndarray, garment: np.ndarray, x: float, y: float) -> None:
        r, c = int(round(y)), int(round(x))
        region = frame[r : r + self.garment, c : c + self.garment]
        np.maximum(region, garment, out=region)

    def clip(self, index: int) -> tuple[np.ndarray, dict]:
        """(frames uint8 [T, size, size], info): info holds `label` (class of the first garment), `direction`
        (-1 for training clips), `garments` (indices into images) and, for eval clips, the `start` corner (x, y)."""
        rng = np.random.default_rng(key_seed(self.seed, SPLIT_KEYS[self.split], index))
        frames = np.zeros((self.num_frames, self.size, self.size), np.uint8)
        room = self.size - self.garment
        if self.split == "eval":
            g = int(rng.integers(len(self.images)))
            direction = int(rng.integers(8))
            dx, dy = STEPS[direction]
            travel = self.speed * (self.num_frames - 1)

            def start(d: int) -> int:
                low, high = (0, room - travel) if d > 0 else (travel, room) if d < 0 else (0, room)
                return int(rng.integers(low, high + 1))

            x0, y0 = start(dx), start(dy)
            for t in range(self.num_frames):
                self._paste(frames[t], self.images[g], x0 + dx * self.speed * t, y0 + dy * self.speed * t)
            return frames, {"label": int(self.labels[g]), "direction": direction, "garments": [g], "start": (x0, y0)}
        n = int(rng.integers(1, self.max_garments + 1))
        garments = rng.integers(len(self.images), size=n)
        pos = rng.uniform(0, room, size=(n, 2))
        angle, speed = rng.uniform(0, 2 * math.pi, size=n), rng.uniform(1, 3, size=n)
        vel = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
        for t in range(self.num_frames):
            for k in range(n):
                self._paste(frames[t], self.images[garments[k]], *pos[k])
            pos += vel
            for axis in range(2):  # bounce: reflect position and velocity at the borders
                low, high = pos[:, axis] < 0, pos[:, axis] > room
                pos[low, axis] *= -1
                pos[high, axis] = 2 * room - pos[high, axis]
                vel[low | high, axis] *= -1
        return frames, {"label": int(self.labels[garments[0]]), "direction": -1, "garments": garments.tolist()}

    def __getitem__(self, index: int):
        """(clip uint8 [T, 1, size, size], class, direction, index)."""
        frames, info = self.clip(index)
        return torch.from_numpy(frames).unsqueeze(1), info["label"], info["direction"], index


def normalise_clip(clip: torch.Tensor) -> torch.Tensor:
    """uint8 clip [T, 1, H, W] or frame [1, H, W] -> float, normalised with Fashion-MNIST's statistics."""
    return (clip.float() / 255 - MEAN[0]) / STD[0]


class MovingFashionMNISTDataModule(ResumableDataModule):
    """Moving Fashion-MNIST clips [T, 1, size, size] for V-JEPA (training clips for fit, evaluation clips for val),
    or with `frames` every frame of the same clips as an image [1, size, size], for an I-JEPA encoder trained on the
    same pixels (V-JEPA's frame-wise image-encoder baseline; configs/ijepa/moving_fmnist_frames_cpu.yaml).

    Args:
        root: Fashion-MNIST folder (default: the Debian package's).
        train_clips: training clips per epoch (a fixed set: clip i is always the same).
        val_clips: evaluation clips.
        num_frames: frames per clip.
        size: frame side in pixels.
        batch_size: clips per device and step.
        num_workers: dataloader workers.
        seed: which clips (and the epoch order).
        frames: single frames (clips x num_frames images per epoch) instead of clips.
        garment: garment side in pixels (28: Fashion-MNIST's own; see MovingFashionMNIST).
    """

    def __init__(self, root: str | None = None, train_clips: int = 20_000, val_clips: int = 2_000, num_frames: int = 16,
                 size: int = 64, batch_size: int = 32, num_workers: int = 1, seed: int = 0,
                 frames: bool = False, garment: int = GARMENT) -> None:
        super().__init__()
        from data.fashion_mnist import find_root

        self.root = str(find_root(root))
        self.train_clips, self.val_clips, self.num_frames, self.size = train_clips, val_clips, num_frames, size
        self.batch_size, self.num_workers, self.seed, self.frames = batch_size, num_workers, seed, frames
        self.garment = garment
        self.normalisation = {"mean": list(MEAN), "std": list(STD)}  # normalise_clip's
        # kept in the checkpoint, so `jepa probe` builds its clips with the garments the encoder was trained on
        self.save_hyperparameters("garment")

    def dataset(self, split: str, length: int) -> Dataset:
        images, labels = load_split(self.root, "train" if split == "train" else "test")
        clips = MovingFashionMNIST(images, labels, split, length, self.num_frames, self.size, self.seed,
                                   garment=self.garment)
        return ClipFrames(clips) if self.frames else clips

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self.dataset("train", self.train_clips)
        self.val_set = _Normalised(self.dataset("eval", self.val_clips))

    def train_dataloader(self):
        return self.train_loader(self.train_set, normalise_clip, self.batch_size, self.num_workers)

    def val_dataloader(self):
        return self.eval_loader(self.val_set, self.batch_size, self.num_workers)


def labelled_clips(clips, labels: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every clip of a dataset with `clip(i) -> (frames [T, H, W], info)` as uint8 [n, T, 1, H, W], and each of
    `labels` read from the infos: what the clip probes and the online monitor fit on."""
    frames, values = [], {label: [] for label in labels}
    for i in range(len(clips)):
        clip, info = clips.clip(i)
        frames.append(torch.from_numpy(clip).unsqueeze(1))
        for label in labels:
            values[label].append(info[label])
    return torch.stack(frames), {label: torch.as_tensor(np.asarray(v)) for label, v in values.items()}


class ClipFrames(Dataset):
    """Frame i of a clip dataset = frame i % T of clip i // T: items (frame uint8 [1, H, W], class, direction, i)."""

    def __init__(self, clips: MovingFashionMNIST) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips) * self.clips.num_frames

    def __getitem__(self, i: int):
        clip, label, direction, _ = self.clips[i // self.clips.num_frames]
        return clip[i % self.clips.num_frames], label, direction, i


class _Normalised(Dataset):
    def __init__(self, base: MovingFashionMNIST) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        clip, *rest = self.base[i]
        return (normalise_clip(clip), *rest)


__all__ = ["CLASSES", "ClipFrames", "DIRECTIONS", "MovingFashionMNIST", "MovingFashionMNISTDataModule",
           "labelled_clips"]
