"""Checkpoint files that are whole or absent, never non-finite, and checked before a resume trusts them.

AtomicCheckpointIO (a Lightning CheckpointIO plugin) writes every checkpoint to a temporary file in the target
folder, fsyncs it, renames it into place and then writes `<name>.sha256` beside it. It refuses to write a
checkpoint holding a NaN/inf tensor, and checks the free space first. Every read, Lightning's resume included, goes
through safe_load (weights_only=True whatever the caller asks). newest_valid_checkpoint() picks the newest checkpoint
of a folder that verifies (checksum or zip structure, and nothing a safe load refuses), warning about each one it
passes over.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from jepa.errors import ConfigError
from jepa.io import atomic_write, sha256_of, write_text
from jepa.safe_load import safe_load, unsafe_globals

SIDECAR = ".sha256"


class NonFiniteCheckpointError(RuntimeError):
    """A checkpoint about to be written holds NaN or inf values."""


def nonfinite_tensors(obj, prefix: str = "") -> list[str]:
    """Paths of floating-point tensors with NaN/inf anywhere in a nested checkpoint dict."""
    found = []
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.numel() and not bool(torch.isfinite(obj).all()):
            found.append(prefix or "<tensor>")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found += nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += nonfinite_tensors(value, f"{prefix}[{i}]")
    return found


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """ConfigError when `folder` (or its nearest existing parent) has less than `needed` bytes free."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ConfigError(f"not enough disk for {what} in {folder}: needs about {needed / 2**20:.0f} MiB, "
                          f"{free / 2**20:.0f} MiB free")


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with atomic writes, a sha256 sidecar, a non-finite guard, a free-space check and reads
    that are always weights-only."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        # Lightning passes weights_only=None (torch's default, unsafe before torch 2.6): always refuse code
        return safe_load(path, map_location=map_location or "cpu")

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteCheckpointError(f"refusing to write checkpoint {path}: non-finite values in "
                                           f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
        path = Path(path)
        # temporary copy + the file it replaces may coexist for a moment
        check_free_space(path.parent, int(tensor_bytes(checkpoint) * 1.1) + (1 << 20), f"checkpoint {path.name}")
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
        write_text(str(path) + SIDECAR, f"{sha256_of(path)}  {path.name}\n")

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)
        Path(str(path) + SIDECAR).unlink(missing_ok=True)


def verify_checkpoint(path: str | os.PathLike) -> str | None:
    """None when the checkpoint is intact and safe to load, else why not (checksum mismatch, truncated zip,
    code a weights-only load refuses, ...)."""
    path = Path(path)
    sidecar = Path(str(path) + SIDECAR)
    try:
        if sidecar.is_file():
            expected = sidecar.read_text().split()[0]
            if sha256_of(path) != expected:
                return "its sha256 does not match " + sidecar.name
        else:
            with zipfile.ZipFile(path) as archive:  # torch.save's format; testzip reads and CRC-checks every member
                broken = archive.testzip()
            if broken is not None:
                return f"member {broken} fails its CRC"
        blocked = unsafe_globals(path)
    except (OSError, zipfile.BadZipFile, IndexError, RuntimeError, pickle.UnpicklingError) as err:
        return f"it cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
    if blocked:
        return (f"it references {', '.join(blocked[:5])}, which a safe load refuses; do not load this file, "
                "it may execute code")
    return None


def _step_of(path: Path) -> int:
    match = re.search(r"(\d+)(?!.*\d)", path.stem)
    return int(match.group(1)) if match else -1


def newest_valid_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest intact *.ckpt in folder (by the step number in its name, then modification time)."""
    folder = Path(folder)
    candidates = sorted(folder.glob("*.ckpt"), key=lambda p: (_step_of(p), p.stat().st_mtime), reverse=True)
    for path in candidates:
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        warnings.warn(f"skipping checkpoint {path}: {problem}; trying an older one", stacklevel=2)
    return None
