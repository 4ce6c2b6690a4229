"""Tiny shards for the data tests: grey 16x16 PNGs whose .cls is the sample's unique id."""
from __future__ import annotations

import io

import lightning as L
import numpy as np
from PIL import Image

from data.shard_datamodule import ImageShardDataModule
from data.shard_writer import write_shards


def png(value: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value % 256, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def id_samples(n: int, start: int = 0):
    for i in range(start, start + n):
        yield {"__key__": f"{i:06d}", "png": png(i), "cls": str(i).encode()}


def make_shards(folder, n: int = 80, per_shard: int = 10) -> str:
    """n samples with ids 0..n-1 in shards of per_shard; returns the brace pattern."""
    index = write_shards(id_samples(n), folder, "test", max_count=per_shard, progress=False)
    return f"{folder}/{index['pattern']}"


def image_data(urls, cls=ImageShardDataModule, **kwargs) -> ImageShardDataModule:
    defaults = dict(img_size=16, channels=1, mean=(0.5,), std=(0.5,), crop_scale=(0.5, 1.0), batch_size=4,
                    num_workers=2, prefetch_factor=2)
    return cls(urls, **{**defaults, **kwargs})


def ids_of_epoch(dm: ImageShardDataModule) -> list[int]:
    """Sample ids of one epoch of the training loader, each batch recorded as trained on (as in a Trainer)."""
    ids = []
    for batch in dm.train_dataloader():
        (images, labels), meta = dm.strip(batch)
        dm.record(meta)
        ids += labels.tolist()
    return ids


class RecordIds(L.Callback):
    """Collects the ids of the samples each training step used."""

    def __init__(self) -> None:
        self.ids: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids.append(batch[1].tolist())
