"""Exact mid-epoch resume for map-style datasets (in-memory Fashion-MNIST, image folders).

The order of an epoch is a permutation drawn from (seed, epoch) and split over ranks (DistributedSampler's rule);
each sample's augmentation is drawn from (seed, epoch, index). The datamodule records how many samples of the
current epoch the model trained on and saves that in every checkpoint, so a resumed run continues with the next
sample and draws the same crops: its weights end up bitwise equal to an uninterrupted run's on CPU.
"""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from data.workers import ignore_termination
from jepa.seeding import key_seed, seeded_cpu_rng


def samples_in(batch) -> int:
    """A batch's sample count, read from its first tensor: inputs may be nested (views, local views) pairs."""
    x = batch[0]
    while isinstance(x, (tuple, list)):
        x = x[0]
    return len(x)


class KeyedDataset(Dataset):
    """Wraps a dataset whose items are (input, ...): item (epoch, i) is base[i] with `transform` applied to the
    input under a random state keyed by (seed, epoch, i)."""

    def __init__(self, base: Dataset, transform, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, i = key
        x, *rest = self.base[i]
        with seeded_cpu_rng(key_seed(self.seed, epoch, i)):
            x = self.transform(x) if self.transform is not None else x
        return (x, *rest)


class ResumableSampler(DistributedSampler):
    """DistributedSampler's per-epoch order, yielding (epoch, index) keys and skipping the samples of the current
    epoch already trained on (read from the shared `progress` dict when an epoch's iteration starts)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, progress: dict,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.progress = progress

    def __iter__(self):
        indices = list(super().__iter__())
        start = self.progress["consumed"] if self.progress["epoch"] == self.epoch else 0
        return iter([(self.epoch, i) for i in indices[start:]])


class PositionInDataModule:
    """Marks a loader as resumable mid-epoch for Lightning (which then stops warning that it is not): the position
    lives in the datamodule's checkpointed state, recorded per trained batch (a loader's own state would also count
    the batches Lightning's fetcher prefetched)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class StatefulLoader(PositionInDataModule, DataLoader):
    """The resumable map-style training loader."""


class ResumableDataModule(L.LightningDataModule):
    """Base for map-style datamodules: train_loader() builds the resumable loader; progress is checkpointed."""

    seed: int = 0
    normalisation: dict | None = None  # {"mean", "std"} of the inputs, saved in checkpoints for `jepa export`

    def __init__(self) -> None:
        super().__init__()
        self.progress = {"epoch": 0, "consumed": 0}  # samples of `epoch` this rank has trained on

    def train_loader(self, base: Dataset, transform, batch_size: int, num_workers: int) -> StatefulLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = ResumableSampler(base, world, rank, self.seed, self.progress)
        return StatefulLoader(
            KeyedDataset(base, transform, self.seed), batch_size=batch_size, sampler=sampler, drop_last=True,
            num_workers=num_workers, persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
            worker_init_fn=ignore_termination,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds drawn here, not from the global RNG
        )

    @staticmethod
    def eval_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
                          worker_init_fn=ignore_termination)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is not None and trainer.training:
            if self.progress["epoch"] != trainer.current_epoch:
                self.progress.update(epoch=trainer.current_epoch, consumed=0)
            self.progress["consumed"] += samples_in(batch)
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.progress["epoch"], "consumed": self.progress["consumed"], "seed": self.seed,
                "normalisation": self.normalisation}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) == self.seed:
            self.progress.update(epoch=state["epoch"], consumed=state["consumed"])
