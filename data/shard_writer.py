"""Write samples into WebDataset tar shards atomically, with a JSON index.

A shard is written as `.NAME-000003.tar.partial` and renamed to `NAME-000003.tar` only once it is complete and
fsynced, so an interrupted write never leaves a partial shard under a final name (stale .partial files are
removed by the next write into the same folder). index.json records samples and bytes per shard, the total, the
source and the member keys; the streaming datamodule reads the total from it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

import webdataset as wds

from jepa.errors import ConfigError
from jepa.io import write_json

INDEX_NAME = "index.json"


def prepare_shard_folder(out_dir: str | os.PathLike, name: str, overwrite: bool) -> Path:
    """--out of a shard write: a writable folder holding no shards (or, with overwrite, its NAME-*.tar and index
    removed first, so no stale shard of an earlier, larger write is read with the new ones)."""
    from jepa.outputs import check_writable

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file; give a folder")
    existing = sorted(out.glob("*.tar")) + [p for p in [out / INDEX_NAME] if p.exists()] if out.is_dir() else []
    if existing and not overwrite:
        raise ConfigError(f"--out: {out} already holds shards ({existing[0].name}); choose another folder or pass "
                          "--overwrite")
    check_writable("--out", out)
    if overwrite:
        for old in [*out.glob(f"{name}-*.tar"), out / INDEX_NAME]:
            old.unlink(missing_ok=True)
    return out


class AtomicShardWriter:
    """Samples (dicts of bytes with a "__key__") into NAME-%06d.tar shards of at most max_count samples and about
    max_size bytes each (a shard is closed as soon as it reaches either)."""

    def __init__(self, out_dir: str | os.PathLike, name: str = "shard", max_count: int = 10_000,
                 max_size: int = 1 << 30) -> None:
        if max_count < 1 or max_size < 1:
            raise ConfigError(f"max_count and max_size must be >= 1, got {max_count} and {max_size}")
        if "/" in name or not name:
            raise ConfigError(f"shard name must be a plain file-name prefix, got {name!r}")
        self.out_dir, self.name, self.max_count, self.max_size = Path(out_dir), name, max_count, max_size
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.glob(f".{name}-*.tar.partial"):
            stale.unlink()
        self.shards: list[dict] = []
        self.keys: set[str] = set()
        self._tar = self._partial = None
        self._count = self._size = 0

    def _final(self, index: int) -> Path:
        return self.out_dir / f"{self.name}-{index:06d}.tar"

    def _open(self) -> None:
        self._partial = self.out_dir / f".{self.name}-{len(self.shards):06d}.tar.partial"
        self._stream = open(self._partial, "wb")
        self._tar = wds.TarWriter(self._stream, encoder=False, mtime=0.0)
        self._count = self._size = 0

    def _close(self) -> None:
        self._tar.close()  # closes the tar stream, not our file object
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()
        final = self._final(len(self.shards))
        os.replace(self._partial, final)
        self.shards.append({"file": final.name, "samples": self._count, "bytes": final.stat().st_size})
        self._tar = None

    def write(self, sample: dict) -> None:
        if "__key__" not in sample or "." in sample["__key__"]:
            raise ValueError(f"sample key must be present and free of dots, got {sample.get('__key__')!r}")
        if self._tar is None:
            self._open()
        self._size += self._tar.write(sample)
        self._count += 1
        self.keys.update(k for k in sample if not k.startswith("__"))
        if self._count >= self.max_count or self._size >= self.max_size:
            self._close()

    def finish(self, source: str, extra: dict | None = None) -> dict:
        """Close the last shard and write index.json; returns the index."""
        if self._tar is not None:
            self._close()
        last = len(self.shards) - 1
        index = {
            "name": self.name,
            "pattern": f"{self.name}-{{{0:06d}..{last:06d}}}.tar" if last > 0 else f"{self.name}-000000.tar",
            "total": sum(s["samples"] for s in self.shards),
            "source": source,
            "keys": sorted(self.keys),
            "shards": self.shards,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(extra or {}),
        }
        write_json(self.out_dir / INDEX_NAME, index)
        return index


def write_shards(samples: Iterable[dict], out_dir: str | os.PathLike, source: str, name: str = "shard",
                 max_count: int = 10_000, max_size: int = 1 << 30, total: int | None = None,
                 extra: dict | None = None, progress: bool = True) -> dict:
    """Write every sample, with a progress bar, and return the index."""
    from tqdm import tqdm

    writer = AtomicShardWriter(out_dir, name, max_count, max_size)
    for sample in tqdm(samples, total=total, desc=f"writing {name} shards", unit="sample", disable=not progress):
        writer.write(sample)
    return writer.finish(source, extra)
