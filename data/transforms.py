"""torchvision v2 transforms shared by the image datamodules."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from jepa.errors import ConfigError


def train_transform(size: int, crop_scale: tuple[float, float], flip: bool, mean, std) -> v2.Compose:
    """I-JEPA's augmentation: RandomResizedCrop (scale 0.3-1.0 by default) and a horizontal flip, nothing else."""
    lo, hi = crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"data.crop_scale must satisfy 0 < min <= max <= 1, got {list(crop_scale)}")
    steps = [v2.ToImage(), v2.RandomResizedCrop(size, scale=(lo, hi), antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


def eval_transform(mean, std, size: int | None = None) -> v2.Compose:
    steps = [v2.ToImage()]
    if size is not None:
        steps += [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class Views:
    """`n` independent draws of a random transform of one image, stacked [n, ...]: the views a multi-view objective
    (ijepa.IJEPA's view_weight) compares. Under the loader's keyed random state the draws are reproducible."""

    def __init__(self, transform, n: int) -> None:
        if n < 2:
            raise ConfigError(f"data.views must be >= 2 to stack views (1: a single view, no stacking), got {n}")
        self.transform, self.n = transform, n

    def __call__(self, x):
        return torch.stack([self.transform(x) for _ in range(self.n)])


def with_views(transform, views: int):
    """The training transform of a datamodule's `views` option: the transform itself for 1, else Views of it."""
    if views < 1:
        raise ConfigError(f"data.views must be >= 1, got {views}")
    return transform if views == 1 else Views(transform, views)
