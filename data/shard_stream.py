"""A resumable stream of decoded samples from WebDataset tar shards, split over DDP ranks and dataloader workers.

Layout: the stream runs in passes. In pass p the shard list is permuted by (seed, p) and cut into
n_slots = world_size x num_workers slots (slot = worker x world_size + rank, so every rank gets a shard before any
rank gets a second one); each slot reads its shards front to back, each shard in an order permuted by
(seed, p, shard). Within a pass no shard is read twice and none is skipped. A slot that finishes its shards goes
on to pass p + 1, so the stream never ends and every rank delivers as many batches as the datamodule asks for,
however unevenly the shards divide (uneven shard counts cannot hang DDP).

Every sample carries a meta row (slot, pass, shard position, next offset, skipped counts): the datamodule records
it for each batch the model actually trains on and restarts each slot from there (`start`), so a resumed or next
epoch neither replays nor skips a sample. Augmentation randomness is keyed by (seed, pass, shard, sample index),
so a replayed sample gets the same crop.
"""
from __future__ import annotations

import logging
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from data.decoders import REASONS, BadSample
from jepa.seeding import key_seed, seeded_cpu_rng

log = logging.getLogger(__name__)
META_FIELDS = ("slot", "pass", "shard_pos", "next_offset", *REASONS)


def expand_urls(urls: str | list[str]) -> list[str]:
    """Shard list from 'dir/shard-{000000..000009}.tar' (braces), 'a.tar::b.tar', a local folder (its .tar
    files, in name order), or a list of such strings."""
    items = [urls] if isinstance(urls, str) else list(urls)
    expanded = [u for item in items for u in wds.shardlists.expand_urls(item)]
    return [str(p) for u in expanded for p in (sorted(Path(u).glob("*.tar")) if Path(u).is_dir() else [u])]


def open_url(url: str):
    """A readable binary stream for a local path, file://, http(s):// (urllib) or pipe:COMMAND URL.

    pipe: runs COMMAND in a shell: such URLs must come only from trusted configs.
    """
    if url.startswith(("http://", "https://")):
        return urllib.request.urlopen(url, timeout=60)  # noqa: S310 - the scheme is checked just above
    if url.startswith("pipe:"):
        return wds.gopen(url, "rb")
    return open(url.removeprefix("file://"), "rb")


class ShardStream(IterableDataset):
    """Decoded samples of `urls`, each followed by its meta row (see the module docstring).

    Args:
        urls: expanded shard list.
        decode: (raw sample dict, seed of this sample) -> tuple or dict of tensors; raises BadSample to skip.
        seed: seeds shard order, in-shard order and augmentation.
        shuffle: permute shards per pass and samples per shard (training); off: file order (validation).
        rank, world_size: this process's place in DDP.
        repeat: go on to the next pass when a slot's shards are done (training); off: one pass, then stop.
        expected: samples per shard from the index; a shard that holds fewer (cut on a tar block boundary, which
            reads as a clean end) has the missing ones counted under 'shard'.
    """

    def __init__(self, urls: list[str], decode: Callable, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, repeat: bool = True, expected: list[int] | None = None) -> None:
        self.urls, self.decode, self.seed, self.shuffle, self.expected = urls, decode, seed, shuffle, expected
        self.rank, self.world_size, self.repeat = rank, world_size, repeat
        self.start: dict[int, tuple[int, int, int]] = {}  # slot -> (pass, shard position, offset) to resume from
        self.start_pass = 0  # where slots missing from `start` begin
        self.rotation = 0  # worker w plays slot position (w + rotation) % workers: the DataLoader always asks
        # worker 0 first, so a resumed run hands worker 0 the slot whose batch was due next

    def slot_shards(self, slot: int, n_slots: int, pass_: int) -> list[int]:
        order = np.arange(len(self.urls))
        if self.shuffle:
            order = np.random.default_rng([self.seed, pass_]).permutation(len(self.urls))
        return [int(i) for i in order[slot::n_slots]]

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        slot = (worker + self.rotation) % workers * self.world_size + self.rank
        n_slots = workers * self.world_size
        pass_, pos, offset = self.start.get(slot, (self.start_pass, 0, 0))
        skipped = dict.fromkeys(REASONS, 0)
        while True:
            shards = self.slot_shards(slot, n_slots, pass_)
            if not shards:
                return  # more workers than shards: this worker has nothing to read
            while pos < len(shards):
                shard = shards[pos]
                for index, raw in self._raw_samples(shard, pass_, offset, skipped):
                    seed = key_seed(self.seed, pass_, shard, index)
                    try:
                        with seeded_cpu_rng(seed):
                            item = self.decode(raw, seed)
                    except BadSample as err:
                        skipped[err.reason] += 1
                        log.warning("skipped sample %s in %s (%s)", raw.get("__key__"), self.urls[shard], err)
                        continue
                    meta = torch.tensor([slot, pass_, pos, index + 1, *skipped.values()], dtype=torch.int64)
                    yield {**item, "__meta__": meta} if isinstance(item, dict) else (*item, meta)
                pos, offset = pos + 1, 0
            if not self.repeat:
                return
            pass_, pos = pass_ + 1, 0

    def _raw_samples(self, shard: int, pass_: int, skip: int, skipped: dict) -> Iterator[tuple[int, dict]]:
        """(index, raw sample) from `skip` on, in the per-pass order; reader errors counted under 'shard'."""
        url = self.urls[shard]
        errors: list[Exception] = []

        def handler(err: Exception) -> bool:
            errors.append(err)
            return True

        try:
            stream = open_url(url)
        except OSError as err:
            skipped["shard"] += 1
            log.warning("skipped unreadable shard %s (%s)", url, err)
            return
        with stream:
            files = wds.tariterators.tar_file_expander([{"url": url, "stream": stream}], handler=handler)
            samples = wds.tariterators.group_by_keys(files, handler=handler)
            if self.shuffle:  # a shard's raw bytes fit in memory; its order is a function of (seed, pass, shard)
                buffered = list(samples)
                order = np.random.default_rng([self.seed, pass_, shard, 1 << 20]).permutation(len(buffered))
                samples = [buffered[i] for i in order]
            found = 0
            for index, raw in enumerate(samples):
                found = index + 1
                if index >= skip:
                    yield index, raw
        missing = self.expected[shard] - found if self.expected is not None else 0
        if errors:
            skipped["shard"] += max(1, missing)
            log.warning("shard %s is damaged, kept the samples before the damage (%s)", url, errors[0])
        elif missing > 0:
            skipped["shard"] += missing
            log.warning("shard %s holds %d samples where its index.json says %d: counted %d as skipped", url, found,
                        self.expected[shard], missing)
