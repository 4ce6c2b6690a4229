"""Image folders in torchvision's ImageFolder layout (root/class_x/xxx.jpg), e.g. ImageNet.

An unreadable file (zero bytes, corrupt, truncated, larger than PIL's decompression-bomb limit) is passed over: the
next readable file of the folder takes its place, so batches keep their size and a resumed run sees what an
uninterrupted one would; each bad file is logged once per process and counted per epoch (data/skipped_*).
"""
from __future__ import annotations

import logging
import multiprocessing
import warnings
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from data.decoders import BadSample, read_image
from data.resumable import ResumableDataModule
from data.skip_report import SkipReport
from data.transforms import eval_transform, train_transform
from jepa.errors import ConfigError

log = logging.getLogger(__name__)
SKIP_REASONS = ("empty", "decode")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TolerantImageFolder(ImageFolder):
    """ImageFolder whose unreadable files give way to the next readable one, counted in `skipped` (per reason,
    shared with the loader's worker processes)."""

    def __init__(self, root: str, transform=None, channels: int = 3) -> None:
        try:
            super().__init__(root, transform=transform, loader=partial(read_image, channels=channels))
        except (FileNotFoundError, OSError) as err:  # no class folders, or no image files in them
            raise ConfigError(f"{root}: {err}") from None
        self.skipped = multiprocessing.Array("q", len(SKIP_REASONS))
        self.reported: set[str] = set()

    def __getitem__(self, index: int):
        for offset in range(len(self.samples)):
            sample = self.read((index + offset) % len(self.samples))
            if sample is not None:
                return sample
        raise ConfigError(f"{self.root}: no image in the folder can be read")

    def read(self, i: int):
        """Sample i, or None (counted, and logged once) when its file cannot be read."""
        try:
            return super().__getitem__(i)
        except BadSample as err:
            with self.skipped.get_lock():
                self.skipped[SKIP_REASONS.index(err.reason)] += 1
            if self.samples[i][0] not in self.reported:
                self.reported.add(self.samples[i][0])
                log.warning("skipped an unreadable image (%s)", err)
            return None

    def counts(self) -> list[int]:
        with self.skipped.get_lock():
            return list(self.skipped)


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
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise ConfigError(f"data.mean and data.std need 1 or 3 values each (grey or RGB images), got "
                              f"{list(mean)} and {list(std)}")
        self.train_dir, self.val_dir, self.channels = train_dir, val_dir, len(mean)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_tf = train_transform(img_size, crop_scale, flip, mean, std)
        self.eval_tf = eval_transform(mean, std, size=img_size)
        self.normalisation = {"mean": list(mean), "std": list(std)}
        self.skip_reasons, self.epoch_reports = SKIP_REASONS, []
        self.train_set = TolerantImageFolder(train_dir, channels=self.channels)  # listed now: fail before compute
        if not any(self.train_set.read(i) is not None for i in range(len(self.train_set))):  # stops at the first
            raise ConfigError(f"data.train_dir {train_dir}: no image in the folder can be read")
        self.counted = self.train_set.counts()  # files passed over by that check are not the first epoch's
        if val_dir is None:  # Lightning then skips validation quietly instead of warning about an empty loader
            self.val_dataloader = L.LightningDataModule.val_dataloader.__get__(self)

    def setup(self, stage: str | None = None) -> None:
        self.val_set = TolerantImageFolder(self.val_dir, self.eval_tf, self.channels) if self.val_dir else None
        SkipReport.attach(self)

    def close_epoch(self) -> list[int]:
        """Training files skipped since the last epoch ended (this rank)."""
        now = self.train_set.counts()
        epoch = [a - b for a, b in zip(now, self.counted)]
        self.counted = now
        return epoch

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.train_set, self.train_tf, self.batch_size, self.num_workers)

    def val_dataloader(self):
        return self.eval_loader(self.val_set, self.batch_size, self.num_workers)

    def monitor_data(self, n_fit: int, n_query: int, seed: int = 0):
        """Two disjoint labelled subsets of the *training* folder (eval transform) for online monitors:
        ((fit_x, fit_y), (query_x, query_y)). Unreadable images are skipped and counted in a warning."""
        folder = TolerantImageFolder(self.train_dir, transform=self.eval_tf, channels=self.channels)
        order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(seed)).tolist()
        images, labels = [], []
        for i in order:
            if len(images) == n_fit + n_query:
                break
            sample = folder.read(i)
            if sample is not None:
                images.append(sample[0])
                labels.append(sample[1])
        if sum(folder.counts()):
            warnings.warn(f"monitor_data: skipped {sum(folder.counts())} unreadable images in {self.train_dir}")
        if len(images) < 4:
            raise ConfigError(f"data.train_dir {self.train_dir}: too few readable images for the online monitors")
        x, y = torch.stack(images), torch.tensor(labels)
        n_query = min(n_query, len(x) // 2)
        return (x[n_query:], y[n_query:]), (x[:n_query], y[:n_query])
