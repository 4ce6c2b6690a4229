"""Image folders in torchvision's ImageFolder layout (root/class_x/xxx.jpg), e.g. ImageNet."""
from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from data.resumable import ResumableDataModule
from data.transforms import eval_transform, train_transform
from jepa.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolderDataModule(ResumableDataModule):
    """Training images from `train_dir`, optional validation images from `val_dir`.

    Args:
        train_dir: folder of class sub-folders with training images.
        val_dir: same layout for validation (optional).
        img_size: side of the square crops fed to the model.
        batch_size: images per device and step.
        num_workers: dataloader worker processes.
        crop_scale: RandomResizedCrop area range (I-JEPA: 0.3-1.0).
        flip: random horizontal flip during training.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        seed: epoch order and augmentation are drawn from it (exact mid-epoch resume).
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        img_size: int = 224,
        batch_size: int = 128,
        num_workers: int = 8,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        flip: bool = True,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, path in (("data.train_dir", train_dir), ("data.val_dir", val_dir)):
            if path is not None and not Path(path).is_dir():
                raise ConfigError(f"{key}: folder {path} does not exist; point it at a folder of class sub-folders")
        self.train_dir, self.val_dir = train_dir, val_dir
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_tf = train_transform(img_size, crop_scale, flip, mean, std)
        self.eval_tf = eval_transform(mean, std, size=img_size)
        if val_dir is None:  # Lightning then skips validation quietly instead of warning about an empty loader
            self.val_dataloader = L.LightningDataModule.val_dataloader.__get__(self)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = ImageFolder(self.train_dir)  # transformed by the resumable loader
        self.val_set = ImageFolder(self.val_dir, transform=self.eval_tf) if self.val_dir else None

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.train_set, self.train_tf, self.batch_size, self.num_workers)

    def val_dataloader(self):
        return self.eval_loader(self.val_set, self.batch_size, self.num_workers)

    def monitor_data(self, n_fit: int, n_query: int, seed: int = 0):
        """Two disjoint labelled subsets of the *training* folder (eval transform) for online monitors:
        ((fit_x, fit_y), (query_x, query_y)). Unreadable images are skipped and counted in a warning."""
        folder = ImageFolder(self.train_dir, transform=self.eval_tf)
        order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(seed)).tolist()
        images, labels, bad = [], [], 0
        for i in order:
            if len(images) == n_fit + n_query:
                break
            try:
                x, y = folder[i]
            except (OSError, ValueError):
                bad += 1
                continue
            images.append(x)
            labels.append(y)
        if bad:
            warnings.warn(f"monitor_data: skipped {bad} unreadable images in {self.train_dir}")
        if len(images) < 4:
            raise ConfigError(f"data.train_dir {self.train_dir}: too few readable images for the online monitors")
        x, y = torch.stack(images), torch.tensor(labels)
        n_query = min(n_query, len(x) // 2)
        return (x[n_query:], y[n_query:]), (x[:n_query], y[:n_query])
