"""Sources for `jepa shards write`: each yields WebDataset samples (dicts of bytes) in a seeded shuffled order.

Shuffling at write time matters: a stream reads a shard front to back, so class-sorted shards would give
class-sorted batches.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from data.decoders import VIDEO_KEYS
from jepa.errors import ConfigError


class Source:
    """A sized, seeded sample generator with the metadata the index records."""

    name = "source"

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.extra: dict = {}

    def order(self, n: int) -> np.ndarray:
        return np.random.default_rng(self.seed).permutation(n) if self.seed is not None else np.arange(n)

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        raise NotImplementedError


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class FashionMNISTSource(Source):
    """Fashion-MNIST images as 28x28 grey PNGs with their class in .cls."""

    name = "fashion_mnist"

    def __init__(self, root: str | None, split: str = "train", seed: int | None = 0) -> None:
        from data.fashion_mnist import CLASSES, load_split

        super().__init__(seed)
        self.images, self.labels = load_split(root, split)
        self.split = split
        self.extra = {"classes": list(CLASSES), "split": split}

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        for i in self.order(len(self)):
            yield {"__key__": f"{self.split}_{i:06d}", "png": _png(self.images[i, 0].numpy()),
                   "cls": str(int(self.labels[i])).encode()}


def _class_files(root: Path, extensions: tuple[str, ...]) -> tuple[list[tuple[Path, int]], list[str]]:
    """Files under root (class sub-folders when there are any) as (path, class index), and the class names."""
    if not root.is_dir():
        raise ConfigError(f"input folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    folders = [(root / c, i) for i, c in enumerate(classes)] or [(root, -1)]
    files = [(p, label) for folder, label in folders for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix.lower().lstrip(".") in extensions]
    if not files:
        raise ConfigError(f"no {'/'.join(extensions)} files found under {root}")
    return files, classes


class ImageFolderSource(Source):
    """An image folder (class sub-folders, as torchvision's ImageFolder) stored byte for byte, never re-encoded."""

    name = "image_folder"
    EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")

    def __init__(self, root: str, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.files, classes = _class_files(Path(root), self.EXTENSIONS)
        self.extra = {"classes": classes, "input": str(root)}

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        for i in self.order(len(self)):
            path, label = self.files[i]
            ext = path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
            sample = {"__key__": f"{i:08d}", ext: path.read_bytes()}
            if label >= 0:
                sample["cls"] = str(label).encode()
            yield sample


class VideoFolderSource(ImageFolderSource):
    """A folder of videos (class sub-folders optional), each stored as-is under its container's extension."""

    name = "videos"
    EXTENSIONS = VIDEO_KEYS


class TrajectorySource(Source):
    """A folder of .npz trajectories (frames uint8 [T, H, W, C], actions [T-1, A], optional proprio [T, P])."""

    name = "trajectories"

    def __init__(self, root: str, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.files = sorted(Path(root).glob("*.npz")) if Path(root).is_dir() else []
        if not self.files:
            raise ConfigError(f"no .npz trajectories found in {root}")
        self.extra = {"input": str(root)}

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        for i in self.order(len(self)):
            with np.load(self.files[i], allow_pickle=False) as arrays:
                missing = {"frames", "actions"} - set(arrays.files)
                if missing:
                    raise ConfigError(f"{self.files[i]} lacks {', '.join(sorted(missing))}")
                yield trajectory_sample(f"{i:08d}", **{k: arrays[k] for k in arrays.files})


def trajectory_sample(key: str, frames: np.ndarray, actions: np.ndarray, proprio: np.ndarray | None = None,
                      state: np.ndarray | None = None, **_) -> dict:
    """The shard members of one trajectory (also used by `jepa collect`, which adds the env's true state where its
    adapter reports one)."""
    sample = {"__key__": key, "frames.npy": _npy(frames.astype(np.uint8)), "actions.npy": _npy(actions)}
    for name, values in (("proprio", proprio), ("state", state)):
        if values is not None:
            sample[f"{name}.npy"] = _npy(values)
    return sample


class MovingFashionMNISTSource(Source):
    """Moving Fashion-MNIST clips (data/moving_fmnist.py) as H.264 mp4 (grey in RGB), class in .cls and, for eval
    clips, the direction (0-7) in .dir. The clips are already random: the write order is their index order."""

    name = "moving_fmnist"

    def __init__(self, root: str | None, split: str = "train", seed: int | None = 0, count: int = 10_000,
                 num_frames: int = 16, garment: int | None = None) -> None:
        from data.fashion_mnist import load_split
        from data.moving_fmnist import DIRECTIONS, MovingFashionMNIST

        super().__init__(None)
        images, labels = load_split(root, "train" if split == "train" else "test")
        self.data = MovingFashionMNIST(images, labels, split, count, num_frames, seed=seed or 0, garment=garment)
        self.split = split
        self.extra = {"split": split, "num_frames": num_frames, "garment": self.data.garment,
                      "directions": list(DIRECTIONS)}

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        from data.video import encode_mp4

        for i in range(len(self)):
            frames, info = self.data.clip(i)
            sample = {"__key__": f"{self.split}_{i:07d}", "mp4": encode_mp4(np.repeat(frames[..., None], 3, -1)),
                      "cls": str(info["label"]).encode()}
            if info["direction"] >= 0:
                sample["dir"] = str(info["direction"]).encode()
            yield sample


SOURCES = {s.name: s for s in (FashionMNISTSource, ImageFolderSource, VideoFolderSource, TrajectorySource,
                               MovingFashionMNISTSource)}
