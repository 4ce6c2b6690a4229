"""Fashion-MNIST from the Debian package dataset-fashion-mnist (idx .gz files), held in memory as uint8."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data.resumable import ResumableDataModule
from data.transforms import eval_transform, view_transform
from jepa.errors import ConfigError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MEAN, STD = (0.2860,), (0.3530,)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
INSTALL_HINT = "install it with `apt-get update && apt-get install -y dataset-fashion-mnist` (as root), or pass --data.root DIR"


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the four idx .gz files; a ConfigError naming the path and the fix otherwise."""
    path = Path(root or os.environ.get("FASHION_MNIST_ROOT") or DEFAULT_ROOT)
    missing = [f for pair in FILES.values() for f in pair if not (path / f).is_file()]
    if missing:
        raise ConfigError(f"Fashion-MNIST not found in {path} (missing {', '.join(missing)}): {INSTALL_HINT}")
    return path


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {data.size}")
    return data.reshape(shape)


def load_split(root: str | os.PathLike | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 1, 28, 28], labels int64 [N]) for split 'train' (60k) or 'test' (10k)."""
    if split not in FILES:
        raise ConfigError(f"unknown Fashion-MNIST split {split!r}: use 'train' or 'test'")
    base = find_root(root)
    images, labels = (_read_idx(base / f) for f in FILES[split])
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class TensorImageDataset(Dataset):
    """Images [N, C, H, W] uint8 with labels, transformed per sample; returns (image, label, index)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), self.labels[i], i


class FashionMNISTDataModule(ResumableDataModule):
    """Fashion-MNIST 28x28 grey images: train split (60k) for training, test split (10k) for validation.

    Args:
        root: folder with the four idx .gz files (default: the Debian package's folder, or $FASHION_MNIST_ROOT).
        batch_size: images per device and step.
        num_workers: dataloader worker processes (0: load in the training process).
        crop_scale: RandomResizedCrop area range of the training augmentation.
        flip: random horizontal flip during training.
        limit_train: use only the first N training images (0: all); for smoke tests.
        views: augmented views per training image (1: one image per sample; N > 1: a stack [N, 1, 28, 28] of
            independent crops and flips, for the multi-view objective, model.view_weight).
        local_views: also this many small crops per image (local views; 0: none), each local_size pixels square and
            cropped from local_crop_scale of the image; the samples become the pair (views, local views).
        local_size: side of the local views (the encoder resamples its position embedding to their grid).
        local_crop_scale: RandomResizedCrop area range of the local views (LeJEPA and DINO: 0.05-0.3).
        seed: epoch order and augmentation are drawn from it (and the epoch and image), so a resumed run sees
            exactly the images and crops an uninterrupted one would.
    """

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 256,
        num_workers: int = 1,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        flip: bool = True,
        limit_train: int = 0,
        views: int = 1,
        local_views: int = 0,
        local_size: int = 12,
        local_crop_scale: tuple[float, float] = (0.05, 0.3),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = str(find_root(root))  # fail at construction, before any compute
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers, self.limit_train, self.seed = batch_size, num_workers, limit_train, seed
        self.train_tf = view_transform(28, crop_scale, flip, MEAN, STD, views, local_views, local_size, local_crop_scale)
        self.eval_tf = eval_transform(MEAN, STD)
        self.normalisation = {"mean": list(MEAN), "std": list(STD)}

    def setup(self, stage: str | None = None) -> None:
        images, labels = load_split(self.root, "train")
        if self.limit_train:
            images, labels = images[: self.limit_train], labels[: self.limit_train]
        self.train_set = TensorImageDataset(images, labels)  # transformed by the resumable loader
        self.val_set = TensorImageDataset(*load_split(self.root, "test"), self.eval_tf)

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.train_set, self.train_tf, self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set, self.batch_size, self.num_workers)

    def monitor_data(self, n_fit: int, n_query: int, seed: int = 0):
        """Two disjoint labelled subsets of the *training* split, normalised, for online monitors:
        ((fit_x, fit_y), (query_x, query_y)). Test labels stay unseen."""
        images, labels = load_split(self.root, "train")
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        n_query = min(n_query, len(images) // 2)
        parts = perm[n_query : n_query + n_fit], perm[:n_query]
        mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
        return tuple(((images[i].float() / 255 - mean) / std, labels[i]) for i in parts)
