"""Reading checkpoint files without running code: torch.load(weights_only=True) whatever the caller asks, with
one-line answers for a missing, damaged or unsafe file. No Lightning here: exports load without it."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from jepa.errors import ConfigError


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The classes and functions a checkpoint's pickle names that torch's weights-only loader would refuse."""
    return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def refused_message(path, err: BaseException) -> str:
    """Why a safe load refused `path`, naming what it would have run, without torch's advice to load it unsafely."""
    try:
        blocked = unsafe_globals(path)  # zip checkpoints only
    except Exception:  # noqa: BLE001 - the names are a courtesy; the refusal stands without them
        blocked = []
    blocked = blocked or re.findall(r"GLOBAL ([\w.]+)", str(err))  # torch's message names the first one
    what = ", ".join(blocked[:5]) if blocked else "objects outside plain tensors and containers"
    return (f"checkpoint {path} was refused by the safe loader: it references {what}, which loading would import "
            "or run; do not load this file, it may execute code")


def safe_load(path: str | os.PathLike, map_location="cpu"):
    """torch.load(weights_only=True); a missing, damaged or unsafe file becomes a one-line ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # the safe loader refused a class or function (else: not a pickle at all)
            raise ConfigError(refused_message(path, err)) from None
        raise ConfigError(f"checkpoint {path} cannot be read (not a torch checkpoint: "
                          f"{str(err).splitlines()[0][:120]})") from None
    except Exception as err:  # a truncated or foreign file: say which, not a pickle traceback
        detail = str(err).splitlines()[0][:160] if str(err) else ""
        raise ConfigError(f"checkpoint {path} cannot be read ({type(err).__name__}: {detail}); it is truncated, "
                          "damaged or not a torch checkpoint") from None
