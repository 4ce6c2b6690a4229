"""Output paths checked before any compute: a file where a file is wanted, a folder where a folder is, writable, and
never holding another run's results unless the user resumes that run or says to replace it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from jepa.errors import ConfigError

# what a finished or running run leaves in its folder (relative to it)
RUN_MARKERS = ("results.json", "logs/results.json", "logs/metrics.csv", "checkpoints/last.ckpt")


def check_writable(option: str, folder: str | os.PathLike) -> None:
    """ConfigError naming `option` when `folder` could not be created or written into. Creates nothing: a folder
    that does not exist yet is judged by its nearest existing parent."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option}: {folder} is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option}: cannot write into {folder} ({existing} is a file)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{option}: cannot write into {folder} ({err.strerror or err}); choose a writable folder")


def previous_run(folder: str | os.PathLike, markers: tuple[str, ...] = RUN_MARKERS) -> Path | None:
    """The first file of an earlier run found in `folder`, or None."""
    folder = Path(folder)
    found = [folder / m for m in markers if (folder / m).exists()]
    if not found and (folder / "checkpoints").is_dir():
        found = sorted((folder / "checkpoints").glob("*.ckpt"))
    return found[0] if found else None


def refuse_clobber(option: str, folder: str | os.PathLike, how_to_allow: str,
                   markers: tuple[str, ...] = RUN_MARKERS) -> None:
    """ConfigError when `folder` holds another run's results (e.g. results.json, checkpoints)."""
    found = previous_run(folder, markers)
    if found is not None:
        raise ConfigError(f"{option}: {folder} holds another run's results ({found}); choose another folder or "
                          f"{how_to_allow}")


def check_output_file(option: str, path: str | os.PathLike, overwrite: bool) -> Path:
    """A file about to be written: not a folder, its folder writable, not replacing a file unless `overwrite`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ConfigError(f"{option}: {path} already exists; choose another name or pass --overwrite")
    check_writable(option, path.parent if str(path.parent) else Path("."))
    return path


def check_output_folder(option: str, folder: str | os.PathLike, overwrite: bool) -> Path:
    """A folder about to be filled: not a file, writable, and empty unless `overwrite`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option}: {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ConfigError(f"{option}: {folder} is not empty; choose another folder or pass --overwrite")
    check_writable(option, folder)
    return folder


def check_results_folder(option: str, folder: str | os.PathLike, overwrite: bool) -> Path:
    """A folder an evaluation writes its results.json into: writable, and not holding earlier results unless
    `overwrite`."""
    if not overwrite:
        refuse_clobber(option, folder, "pass --overwrite true to replace them", markers=("results.json",))
    check_writable(option, folder)
    return Path(folder)
