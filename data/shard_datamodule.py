"""LightningDataModules that stream WebDataset shards: images, video clips, trajectories.

Epoch length is fixed up front (epoch_samples, or the total in the shards' index.json) and identical on every rank,
never taken from the stream. Resume guarantee: the datamodule's state (saved in every Lightning checkpoint) holds,
for every (rank, worker) slot, the last sample the model trained on; a resumed run with the same shards, seed,
number of processes and workers continues right after it, so no sample of the interrupted pass is replayed or
skipped. With a different number of processes or workers the run restarts the earliest pass in progress (some
samples of that pass are seen again) and says so.
"""
from __future__ import annotations

import json
import logging
import math
import os
import urllib.request
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from data.decoders import REASONS, ClipDecoder, ImageDecoder, TrajectoryDecoder
from data.image_folder import IMAGENET_MEAN, IMAGENET_STD
from data.resumable import PositionInDataModule
from data.shard_stream import ShardStream, expand_urls
from data.shard_writer import INDEX_NAME
from data.skip_report import SkipReport
from data.transforms import eval_transform, train_transform, view_transform
from data.workers import ignore_termination
from jepa.errors import ConfigError

log = logging.getLogger(__name__)


PIPE_OPT_IN = "JEPA_ALLOW_PIPE"


def check_pipe_urls(urls: list[str]) -> None:
    """pipe:COMMAND runs COMMAND in a shell, taken from a config: only with an explicit opt-in, and announced."""
    pipes = [url for url in urls if url.startswith("pipe:")]
    if not pipes:
        return
    if os.environ.get(PIPE_OPT_IN) != "1":
        raise ConfigError(f"shard URL {pipes[0]!r} runs a shell command: set {PIPE_OPT_IN}=1 to allow pipe: URLs, and "
                          "only for configs you trust")
    for url in dict.fromkeys(pipes):
        warnings.warn(f"shards: running the shell command {url.removeprefix('pipe:')!r} ({PIPE_OPT_IN}=1)",
                      stacklevel=3)


def index_counts(urls: list[str]) -> list[int] | None:
    """Samples in each of `urls` according to the index.json beside them (None when an index is missing or
    silent about one of them)."""
    indexes: dict[str, dict[str, int]] = {}
    result = []
    for url in urls:
        if url.startswith("pipe:"):
            return None
        folder, _, name = url.rpartition("/")
        if folder not in indexes:
            location = f"{folder}/{INDEX_NAME}" if folder else INDEX_NAME
            try:
                if location.startswith(("http://", "https://")):
                    with urllib.request.urlopen(location, timeout=30) as response:  # noqa: S310
                        index = json.load(response)
                else:
                    index = json.loads(Path(location.removeprefix("file://")).read_text())
                indexes[folder] = {s["file"]: int(s["samples"]) for s in index.get("shards", [])}
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                return None
        if name not in indexes[folder]:
            return None
        result.append(indexes[folder][name])
    return result


class FixedLengthLoader(PositionInDataModule):
    """Exactly `batches` batches per epoch from a fresh iterator of `loader` (so fresh workers), after calling
    `prepare()` (which tells the stream where to start)."""

    def __init__(self, loader: DataLoader, batches: int | None, prepare=None) -> None:
        self.loader, self.batches, self.batch_size, self.prepare = loader, batches, loader.batch_size, prepare

    def __len__(self) -> int:
        return self.batches if self.batches is not None else len(self.loader)

    def __iter__(self):
        if self.prepare is not None:
            self.prepare()
        iterator = iter(self.loader)
        count = 0
        while self.batches is None or count < self.batches:
            try:
                yield next(iterator)
            except StopIteration:
                return
            count += 1


class ShardDataModule(L.LightningDataModule):
    """Base class: training (and optional validation) samples streamed from tar shards.

    Args:
        train_urls: training shards: a path or URL pattern with braces ('shards/shard-{000000..000099}.tar'),
            '::'-separated patterns, or a list. http(s):// URLs stream; 'pipe:CMD' runs CMD in a shell, so such
            URLs are refused unless the environment sets JEPA_ALLOW_PIPE=1, and each command is announced.
        val_urls: validation shards (optional), read in file order.
        batch_size: samples per device and step.
        num_workers: dataloader worker processes per device (0: decode in the training process).
        seed: shard order per pass, sample order per shard and augmentation all derive from it.
        epoch_samples: samples per epoch over all ranks (default: the total in the shards' index.json).
            Every rank runs epoch_samples // (world_size x batch_size) steps per epoch.
        val_samples: validation samples (default: from index.json).
        prefetch_factor: batches each worker prepares ahead.
    """

    def __init__(self, train_urls: str | list[str], val_urls: str | list[str] | None = None, batch_size: int = 128,
                 num_workers: int = 4, seed: int = 0, epoch_samples: int | None = None,
                 val_samples: int | None = None, prefetch_factor: int = 4) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ConfigError(f"data.batch_size must be >= 1 and data.num_workers >= 0, got {batch_size}, "
                              f"{num_workers}")
        self.train_list = expand_urls(train_urls)
        self.val_list = expand_urls(val_urls) if val_urls else []
        if not self.train_list:
            raise ConfigError(f"data.train_urls expands to no shards: {train_urls!r}")
        check_pipe_urls(self.train_list + self.val_list)
        for url in self.train_list + self.val_list:
            if "://" not in url and not url.startswith("pipe:") and not os.path.isfile(url):
                raise ConfigError(f"shard {url} does not exist (data.train_urls / data.val_urls)")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.prefetch_factor = prefetch_factor
        # per-shard sample counts from index.json, read once: the epoch length and the stream's truncation check
        self.train_counts = index_counts(self.train_list)
        self.val_counts = index_counts(self.val_list) if self.val_list else None
        self.epoch_samples = epoch_samples or (sum(self.train_counts) if self.train_counts else None)
        if not self.epoch_samples:
            raise ConfigError("data.epoch_samples is needed: the training shards have no index.json to count them")
        self.val_samples = val_samples or (sum(self.val_counts) if self.val_counts else None)
        if not self.val_list:  # Lightning then skips validation quietly instead of warning about an empty loader
            self.val_dataloader = L.LightningDataModule.val_dataloader.__get__(self)
        # slot -> (pass, shard position, next offset) of the last sample trained on; skipped-sample counts
        self.positions: dict[int, tuple[int, int, int]] = {}
        self.start_pass = 0
        self.rotation = 0  # which worker's slot is due next (see ShardStream.rotation)
        self.committed = [0] * len(REASONS)  # skipped in finished epochs (this rank; rank 0 carries resumed totals)
        self.current: dict[int, list[int]] = {}  # slot -> skipped so far in this epoch's iteration
        self.epoch_reports: list[dict] = []  # per epoch: skipped samples per reason, summed over ranks
        self.skip_reasons = REASONS

    # ---- what subclasses define -------------------------------------------------------------------------------
    def decoder(self, train: bool):
        raise NotImplementedError

    # ---- layout -----------------------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def n_slots(self) -> int:
        return max(1, self.num_workers) * self.world_size

    def setup(self, stage: str | None = None) -> None:
        if len(self.train_list) < self.world_size:
            raise ConfigError(f"{len(self.train_list)} training shards for {self.world_size} processes: write at "
                              "least one shard per process (jepa shards write --max_count N)")
        if self.batches_per_epoch < 1:
            raise ConfigError(f"data.epoch_samples={self.epoch_samples} is less than one batch of "
                              f"{self.batch_size} on each of {self.world_size} processes")
        SkipReport.attach(self)

    @property
    def batches_per_epoch(self) -> int:
        return self.epoch_samples // (self.world_size * self.batch_size)

    def _loader(self, dataset: ShardStream, batches: int | None, prepare=None) -> FixedLengthLoader:
        loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            pin_memory=torch.cuda.is_available(), persistent_workers=False,
                            prefetch_factor=self.prefetch_factor if self.num_workers else None,
                            worker_init_fn=ignore_termination)
        return FixedLengthLoader(loader, batches, prepare)

    def train_dataloader(self) -> FixedLengthLoader:
        dataset = ShardStream(self.train_list, self.decoder(train=True), self.seed, shuffle=True, rank=self.rank,
                              expected=self.train_counts,
                              world_size=self.world_size, repeat=True)

        def prepare() -> None:  # each epoch's (and a resumed run's) workers start after the last trained sample
            dataset.start, dataset.start_pass, dataset.rotation = dict(self.positions), self.start_pass, self.rotation

        return self._loader(dataset, self.batches_per_epoch, prepare)

    def val_dataloader(self) -> FixedLengthLoader:
        world = self.world_size
        if world > 1 and not self.val_samples:
            raise ConfigError("data.val_samples is needed for validation on several processes (no index.json)")
        dataset = ShardStream(self.val_list, self.decoder(train=False), self.seed, shuffle=False, rank=self.rank,
                              expected=self.val_counts,
                              world_size=world, repeat=world > 1)
        # One process: every validation sample once. Several: the same number of batches on each rank.
        batches = (math.ceil(self.val_samples / self.batch_size) if self.val_samples else None) if world == 1 \
            else max(1, self.val_samples // (world * self.batch_size))
        return self._loader(dataset, batches)

    # ---- progress: recorded per trained batch, saved in checkpoints ------------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        batch, meta = self.strip(batch)
        if self.trainer is not None and self.trainer.training:
            self.record(meta)
        return batch

    @staticmethod
    def strip(batch):
        """(batch without its meta rows, meta rows [B, len(META_FIELDS)])."""
        if isinstance(batch, dict):
            batch = dict(batch)
            return batch, batch.pop("__meta__")
        return type(batch)(batch[:-1]), batch[-1]

    def record(self, meta: torch.Tensor) -> None:
        """Note a batch as trained on: its worker's slot resumes after it, the next worker's slot is due next."""
        last = meta[-1].tolist()  # a batch comes from one worker; its last row is the furthest position
        self.positions[last[0]] = tuple(last[1:4])
        self.current[last[0]] = last[4:]
        self.rotation = (last[0] // self.world_size + 1) % max(1, self.num_workers)

    def close_epoch(self) -> list[int]:
        """Skipped counts of the epoch that just ended (this rank), folded into the running totals."""
        epoch = [sum(c[i] for c in self.current.values()) for i in range(len(REASONS))]
        self.committed = [a + b for a, b in zip(self.committed, epoch)]
        self.current = {}
        return epoch

    def skipped_total(self) -> list[int]:
        return [self.committed[i] + sum(c[i] for c in self.current.values()) for i in range(len(REASONS))]

    def state_dict(self) -> dict:
        local = {"positions": dict(self.positions), "skipped": self.skipped_total()}
        parts = [local]
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            parts = [None] * self.world_size
            dist.all_gather_object(parts, local)  # every rank calls state_dict when a checkpoint is saved
        positions = {str(k): list(v) for p in parts for k, v in p["positions"].items()}
        skipped = [sum(p["skipped"][i] for p in parts) for i in range(len(REASONS))]
        return {"n_slots": self.n_slots, "n_shards": len(self.train_list), "seed": self.seed,
                "start_pass": self.start_pass, "rotation": self.rotation, "positions": positions, "skipped": skipped,
                "normalisation": getattr(self, "normalisation", None)}

    def load_state_dict(self, state: dict) -> None:
        positions = {int(k): tuple(v) for k, v in state.get("positions", {}).items()}
        same = (state.get("n_slots"), state.get("n_shards"), state.get("seed")) == \
            (self.n_slots, len(self.train_list), self.seed)
        if same:
            self.positions.clear()
            self.positions.update(positions)
            self.start_pass, self.rotation = state.get("start_pass", 0), state.get("rotation", 0)
        else:
            self.rotation = 0
            self.positions.clear()
            self.start_pass = min((p[0] for p in positions.values()), default=state.get("start_pass", 0))
            warnings.warn(f"shard stream layout changed since the checkpoint (slots, shards, seed: "
                          f"{state.get('n_slots')}, {state.get('n_shards')}, {state.get('seed')} -> {self.n_slots}, "
                          f"{len(self.train_list)}, {self.seed}): restarting pass {self.start_pass} from its start",
                          stacklevel=1)
        self.committed = list(state.get("skipped", self.committed)) if self.rank == 0 else [0] * len(REASONS)
        self.current = {}


class ImageShardDataModule(ShardDataModule):
    """Images from shards (any of .jpg/.png/.webp/... with an optional .cls label), with I-JEPA's augmentation.

    Args:
        img_size: side of the square crops.
        channels: 1 (grey) or 3 (RGB): images are decoded to this many channels.
        crop_scale: RandomResizedCrop area range (I-JEPA: 0.3-1.0).
        flip: random horizontal flip.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        views: augmented views per training image (1: one image; N > 1: a stack [N, C, H, W] of independent crops and
            flips, for the multi-view objective, model.view_weight).
        local_views: also this many small crops per image (local views), the samples becoming (views, local views).
        local_size: side of the local views.
        local_crop_scale: RandomResizedCrop area range of the local views.
    """

    def __init__(self, train_urls: str | list[str], val_urls: str | list[str] | None = None, img_size: int = 224,
                 channels: int = 3, crop_scale: tuple[float, float] = (0.3, 1.0), flip: bool = True,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 batch_size: int = 128, num_workers: int = 4, seed: int = 0, epoch_samples: int | None = None,
                 val_samples: int | None = None, prefetch_factor: int = 4, views: int = 1, local_views: int = 0,
                 local_size: int = 96, local_crop_scale: tuple[float, float] = (0.05, 0.3)) -> None:
        super().__init__(train_urls, val_urls, batch_size, num_workers, seed, epoch_samples, val_samples,
                         prefetch_factor)
        if channels not in (1, 3) or len(mean) != channels or len(std) != channels:
            raise ConfigError(f"data.channels must be 1 or 3 with as many mean/std values, got {channels}, "
                              f"{list(mean)}, {list(std)}")
        self.channels = channels
        self.train_tf = view_transform(img_size, crop_scale, flip, mean, std, views, local_views, local_size,
                                       local_crop_scale)
        self.eval_tf = eval_transform(mean, std, size=img_size)
        self.normalisation = {"mean": list(mean), "std": list(std)}

    def decoder(self, train: bool) -> ImageDecoder:
        return ImageDecoder(self.train_tf if train else self.eval_tf, self.channels)


class ClipShardDataModule(ShardDataModule):
    """Video clips from shards (.mp4 by default, decoded with PyAV), one random resized crop per clip.

    Args:
        img_size: side of the square crops.
        num_frames: frames per clip.
        frame_step: take every frame_step-th frame.
        crop_scale: RandomResizedCrop area range applied to the whole clip.
        flip: random horizontal flip of the whole clip.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
    """

    def __init__(self, train_urls: str | list[str], val_urls: str | list[str] | None = None, img_size: int = 224,
                 num_frames: int = 16, frame_step: int = 4, crop_scale: tuple[float, float] = (0.3, 1.0),
                 flip: bool = False, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 batch_size: int = 24, num_workers: int = 4, seed: int = 0, epoch_samples: int | None = None,
                 val_samples: int | None = None, prefetch_factor: int = 2) -> None:
        super().__init__(train_urls, val_urls, batch_size, num_workers, seed, epoch_samples, val_samples,
                         prefetch_factor)
        if num_frames < 1 or frame_step < 1:
            raise ConfigError(f"data.num_frames and data.frame_step must be >= 1, got {num_frames}, {frame_step}")
        self.num_frames, self.frame_step = num_frames, frame_step
        self.train_tf = train_transform(img_size, crop_scale, flip, mean, std)
        self.eval_tf = eval_transform(mean, std, size=img_size)
        self.normalisation = {"mean": list(mean), "std": list(std)}

    def decoder(self, train: bool) -> ClipDecoder:
        return ClipDecoder(self.train_tf if train else self.eval_tf, self.num_frames, self.frame_step)


class TrajectoryShardDataModule(ShardDataModule):
    """Windows of num_frames steps from trajectory shards (frames.npy, actions.npy, optional proprio.npy):
    batches are dicts of frames [B, k, C, H, W] (scaled to [0, 1] and normalised), actions [B, k-1, A] and
    proprio [B, k, P].

    Args:
        num_frames: steps per window (0: whole trajectories, which must then share one length).
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
    """

    def __init__(self, train_urls: str | list[str], val_urls: str | list[str] | None = None, num_frames: int = 4,
                 mean: tuple[float, ...] = (0.5, 0.5, 0.5), std: tuple[float, ...] = (0.5, 0.5, 0.5),
                 batch_size: int = 64, num_workers: int = 2, seed: int = 0, epoch_samples: int | None = None,
                 val_samples: int | None = None, prefetch_factor: int = 4) -> None:
        super().__init__(train_urls, val_urls, batch_size, num_workers, seed, epoch_samples, val_samples,
                         prefetch_factor)
        if num_frames < 0:
            raise ConfigError(f"data.num_frames must be >= 0, got {num_frames}")
        self.num_frames = num_frames
        self.transform = eval_transform(mean, std)

    def decoder(self, train: bool) -> TrajectoryDecoder:
        return TrajectoryDecoder(self.transform, self.num_frames)
