"""Tiny models and data shared by the tests (CPU, seconds)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "PYTEST_XDG_CACHE_HOME" not in os.environ:  # feature caches of `jepa probe` go to a throwaway folder, not ~/.cache
    import tempfile

    os.environ["XDG_CACHE_HOME"] = os.environ["PYTEST_XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jepa-test-cache-")

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from data.fashion_mnist import TensorImageDataset
from ijepa import IJEPA, MultiBlockMaskSampler

TINY = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
            predictor_embed_dim=16, predictor_depth=1)


def tiny_model(seed: int = 0, cls: type[IJEPA] = IJEPA, **overrides) -> IJEPA:
    torch.manual_seed(seed)
    kwargs = {**TINY, "mask_sampler": MultiBlockMaskSampler(min_keep=2), "monitor_every": 1, **overrides}
    return cls(**kwargs)


def tiny_images(n: int = 32, seed: int = 0, size: int = 16) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorImageDataset(images, labels, transform=lambda x: x.float() / 255)


def tiny_vjepa(seed: int = 0, cls=None, **overrides):
    from vjepa import VJEPA, MultiBlock3DMaskSampler

    torch.manual_seed(seed)
    kwargs = {**TINY, "num_frames": 4, "tubelet_size": 2, "mask_sampler": MultiBlock3DMaskSampler(),
              "monitor_every": 1, **overrides}
    return (cls or VJEPA)(**kwargs)


def tiny_clips(n: int = 16, seed: int = 0) -> TensorImageDataset:
    """Random 4-frame 16x16 grey clips [T, C, H, W] with labels and indices."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (n, 4, 1, 16, 16), generator=g, dtype=torch.uint8)
    return TensorImageDataset(clips, torch.randint(0, 10, (n,), generator=g), transform=lambda x: x.float() / 255)


class TinyData(L.LightningDataModule):
    def __init__(self, n: int = 32, batch_size: int = 8, shuffle: bool = False, clips: bool = False) -> None:
        super().__init__()
        self.dataset = tiny_clips(n) if clips else tiny_images(n)
        self.batch_size, self.shuffle = batch_size, shuffle

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle, drop_last=True)


def tiny_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                    log_every_n_steps=1)
    return L.Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def fmnist_root() -> str:
    from data.fashion_mnist import find_root

    return str(find_root(None))  # a ConfigError with the install hint if the Debian package is missing


def tiny_frozen_encoder(folder, pool_grid: int = 2):
    """tiny_control's encoder export (folder / "encoder") as a world model takes it."""
    from jepa_control import FrozenEncoder

    return FrozenEncoder.from_checkpoint(str(folder / "encoder"), pool_grid=pool_grid)


@pytest.fixture
def tiny_control(tmp_path):
    """A 16x16 two-rooms dataset, a tiny random encoder export and a world model trained a few steps on them."""
    from data.shard_sources import trajectory_sample
    from data.shard_writer import write_shards
    from jepa.export import export_encoder
    from jepa.vit import VisionTransformer
    from jepa_control import LatentTrajectoryDataModule, WorldModel
    from jepa_control.collect import collect
    from jepa_control.frames import TWO_ROOMS_MEAN, TWO_ROOMS_STD
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

    env = TwoRooms(TwoRoomsConfig(img_size=16))
    for split, n in (("train", 12), ("val", 4)):
        samples = (trajectory_sample(f"e{i}", **t) for i, t in collect(env, "noisy", n, 6, seed=len(split)))
        write_shards(samples, tmp_path / split, "test", progress=False)
    torch.manual_seed(0)
    export_encoder(VisionTransformer(16, 4, 3, 32, 2, 2), tmp_path / "encoder", {"kind": "test"}, None,
                   TWO_ROOMS_MEAN, TWO_ROOMS_STD)
    model = WorldModel(tiny_frozen_encoder(tmp_path), embed_dim=32, depth=1, num_heads=2, context=2,
                       rollout_steps=2, warmup_steps=1)
    data = LatentTrajectoryDataModule(str(tmp_path / "train"), str(tmp_path / "val"), window=3, batch_size=8,
                                      gate_min_r2=0.0, cache_dir=str(tmp_path / "cache"))
    data.use_encoder(model.frozen_encoder)
    trainer = tiny_trainer(tmp_path, max_steps=6)
    trainer.fit(model, data)
    trainer.save_checkpoint(tmp_path / "wm.ckpt")
    return tmp_path, model, data
