"""On-disk cache of frozen features, so re-probing a checkpoint (new probe settings, more rows) skips the encoder.

An entry is keyed by a hash of everything that determines the features: the checkpoint's content (sha256), which
encoder, the input transform, the layers and pooling, the split and its size. Change any of them and the key
changes; entries are written atomically and read with weights_only=True.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from jepa.io import atomic_write

FORMAT = 1  # bump when the feature code changes what a key means


def cache_key(spec: dict) -> str:
    """A stable hash of a JSON-able description of the features."""
    return hashlib.sha256(json.dumps({"format": FORMAT, **spec}, sort_keys=True, default=str).encode()).hexdigest()[:32]


class FeatureCache:
    """Features stored as `dtype` under <root>/<key>.pt: fp16 by default (half the disk; the probes standardise them
    anyway), fp32 where small differences matter (world-model latents, whose per-step change is near fp16's
    resolution). root=None disables caching. `hits` and `misses` count lookups, so a caller (and a test) can see
    what happened.
    """

    def __init__(self, root: str | os.PathLike | None, dtype: torch.dtype = torch.float16) -> None:
        self.root = Path(root).expanduser() if root else None
        self.dtype = dtype
        self.hits = self.misses = 0

    def get_or_compute(self, spec: dict, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.root is None:
            self.misses += 1
            return compute().to(self.dtype).float()  # the same precision with and without a cache
        if self.dtype != torch.float16:  # the stored precision is part of what an entry means (fp16 keys unchanged)
            spec = {**spec, "dtype": str(self.dtype)}
        path = self.root / f"{cache_key(spec)}.pt"
        if path.is_file():
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True)
                self.hits += 1
                return entry["features"].float()
            except Exception as err:  # a damaged entry is recomputed, not trusted
                print(f"feature cache: ignoring unreadable {path} ({type(err).__name__})")
        self.misses += 1
        features = compute().to(self.dtype)
        entry = {"features": features, "spec": json.dumps(spec, sort_keys=True, default=str)}
        atomic_write(path, lambda tmp: torch.save(entry, tmp))
        return features.float()  # exactly what a later hit returns
