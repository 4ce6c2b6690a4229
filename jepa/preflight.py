"""Checks a run passes before any compute: its output folders are writable and hold room for a checkpoint, and
`--ckpt_path auto` is resolved to the newest intact checkpoint."""
from __future__ import annotations

from pathlib import Path

from jepa.checkpoint_io import AtomicCheckpointIO, check_free_space, newest_valid_checkpoint, verify_checkpoint
from jepa.errors import ConfigError
from jepa.outputs import check_writable
from jepa.periodic_checkpoint import periodic_dir


def output_dirs(trainer) -> dict[str, Path]:
    """The folders a fit writes into, named by the option that sets each."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    dirs = {"trainer.default_root_dir": Path(trainer.default_root_dir)}
    for i, logger in enumerate(trainer.loggers):
        save_dir = getattr(logger, "save_dir", None)
        if save_dir:
            dirs[f"trainer.logger[{i}].save_dir"] = Path(save_dir)
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            dirs[f"{type(cb).__name__}.dirpath"] = Path(cb.dirpath)
    periodic = periodic_dir(trainer)
    if periodic is not None:
        dirs["PeriodicCheckpoint.dirpath"] = periodic
    return dirs


def checkpoint_bytes(model) -> int:
    """About how large a checkpoint of this model is: weights and buffers, plus AdamW's two moments per
    trainable parameter."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + 2 * trainable


def preflight(trainer, model) -> None:
    dirs = output_dirs(trainer)
    for option, folder in dirs.items():
        check_writable(option, folder)
    ckpt_dir = dirs.get("PeriodicCheckpoint.dirpath") or dirs.get("ModelCheckpoint.dirpath")
    if ckpt_dir is not None or trainer.checkpoint_callback is not None:
        check_free_space(ckpt_dir or dirs["trainer.default_root_dir"], checkpoint_bytes(model), "a checkpoint")


def resolve_auto_checkpoint(trainer) -> str | None:
    """`--ckpt_path auto`: the newest intact checkpoint of the run's PeriodicCheckpoint folder, or None (fresh)."""
    folder = periodic_dir(trainer)
    if folder is None:
        raise ConfigError("ckpt_path auto needs a jepa.periodic_checkpoint.PeriodicCheckpoint in trainer.callbacks")
    found = newest_valid_checkpoint(folder) if folder.is_dir() else None
    if trainer.is_global_zero:
        print(f"resuming from {found}" if found else f"no checkpoint in {folder}: starting from scratch", flush=True)
    return str(found) if found else None


def check_checkpoint(path: str) -> None:
    """ckpt_path given by hand: it must exist, be intact and load safely."""
    if Path(path).is_dir():
        raise ConfigError(f"ckpt_path: {path} is a folder; give a checkpoint file (or ckpt_path auto)")
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path: checkpoint {path} does not exist (ckpt_path auto picks the newest intact one)")
    problem = verify_checkpoint(path)
    if problem:
        raise ConfigError(f"ckpt_path: checkpoint {path} cannot be used: {problem}")


def clear_checkpoints(trainer) -> None:
    """A fresh run told to replace an earlier one: remove that run's periodic checkpoints, so `--ckpt_path auto`
    can never resume the earlier run's weights later."""
    folder = periodic_dir(trainer)
    if folder is not None and folder.is_dir() and trainer.is_global_zero:
        for old in folder.glob("*.ckpt"):
            AtomicCheckpointIO().remove_checkpoint(old)
