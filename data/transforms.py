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
    (ijepa.IJEPA's view_weight) compares; with `local_n` > 0, also that many draws of `local_transform` (small crops
    at a lower resolution, LeJEPA's and DINO's local views), returned as the pair (views, local views). Under the
    loader's keyed random state the draws are reproducible."""

    def __init__(self, transform, n: int, local_transform=None, local_n: int = 0) -> None:
        if n < 1 or local_n < 0 or n + local_n < 2:
            raise ConfigError(f"data.views and data.local_views must give >= 2 views in all (views >= 1, local_views "
                              f">= 0), got views {n} and local_views {local_n}")
        if local_n and local_transform is None:
            raise ConfigError("data.local_views > 0 needs a local transform")
        self.transform, self.n, self.local_transform, self.local_n = transform, n, local_transform, local_n

    def __call__(self, x):
        views = torch.stack([self.transform(x) for _ in range(self.n)])
        if not self.local_n:
            return views
        return views, torch.stack([self.local_transform(x) for _ in range(self.local_n)])


def view_transform(size: int, crop_scale: tuple[float, float], flip: bool, mean, std, views: int = 1,
                   local_views: int = 0, local_size: int = 12,
                   local_crop_scale: tuple[float, float] = (0.05, 0.3)):
    """The training transform of an image datamodule: one augmented image (views 1), a stack of `views` of them, or
    with `local_views` > 0 the pair (views, local views of side `local_size` cropped from `local_crop_scale` of the
    image)."""
    if views < 1 or local_views < 0:
        raise ConfigError(f"data.views must be >= 1 and data.local_views >= 0, got {views} and {local_views}")
    transform = train_transform(size, crop_scale, flip, mean, std)
    if views == 1 and not local_views:
        return transform
    local = train_transform(local_size, local_crop_scale, flip, mean, std) if local_views else None
    return Views(transform, views, local, local_views)
