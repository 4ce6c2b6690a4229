"""Makers of bad files for the bad-input suite: each writes one kind of broken input under a folder and returns its
path. Add a maker here when a new kind of bad input needs one."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.helpers.run_jepa import ROOT

LEGACY_CKPT = ROOT / "tests" / "fixtures" / "legacy" / "ijepa_tiny.ckpt"
OFFICIAL = ROOT / "tests" / "fixtures" / "official_ijepa_tiny.pth.tar"


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would hold."""

    def __reduce__(self):
        return os.system, ("touch code-ran",)


class BadFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def truncated(self, name: str = "truncated.ckpt", source: Path = LEGACY_CKPT) -> Path:
        data = source.read_bytes()
        self.path(name).write_bytes(data[: len(data) // 2])
        return self.path(name)

    def empty(self, name: str = "empty.ckpt") -> Path:
        self.path(name).write_bytes(b"")
        return self.path(name)

    def foreign(self, name: str = "foreign.ckpt") -> Path:
        self.path(name).write_text(json.dumps({"not": "a checkpoint"}))
        return self.path(name)

    def foreign_zip(self, name: str = "foreign_zip.ckpt") -> Path:
        with zipfile.ZipFile(self.path(name), "w") as archive:
            archive.writestr("readme.txt", "a zip, but not torch's")
        return self.path(name)

    def folder(self, name: str = "a_folder.ckpt") -> Path:
        self.path(name).mkdir(exist_ok=True)
        return self.path(name)

    def unsafe(self, name: str = "unsafe.ckpt") -> Path:
        """A valid torch zip checkpoint whose pickle would run a shell command."""
        torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": RunsCode()}, self.path(name))
        return self.path(name)

    def unsafe_legacy(self, name: str = "unsafe_legacy.pth.tar") -> Path:
        """The same in the pre-zip pickle format the official checkpoints use."""
        with open(self.path(name), "wb") as f:
            pickle.dump({"encoder": RunsCode()}, f, protocol=2)
        return self.path(name)

    def missing(self, name: str = "missing.ckpt") -> Path:
        return self.path(name)

    def legacy_copy(self, name: str = "legacy.ckpt") -> Path:
        return Path(shutil.copy(LEGACY_CKPT, self.path(name)))

    # ---- configs -------------------------------------------------------------------------------------------
    def text(self, name: str, content: str) -> Path:
        self.path(name).write_text(content)
        return self.path(name)

    # ---- image folders -------------------------------------------------------------------------------------
    def image_folder(self, name: str, files: dict[str, bytes | None]) -> Path:
        """class folders with the given files; None makes a small valid PNG."""
        for rel, data in files.items():
            target = self.path(name) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                Image.fromarray(np.full((12, 12), 100, np.uint8)).save(target, format="PNG")
            else:
                target.write_bytes(data)
        self.path(name).mkdir(exist_ok=True)
        return self.path(name)

    # ---- output paths --------------------------------------------------------------------------------------
    def file_named(self, name: str) -> Path:
        self.path(name).write_text("something the user keeps\n")
        return self.path(name)

    def earlier_run(self, name: str) -> Path:
        """A folder holding another run's results."""
        (self.path(name) / "logs").mkdir(parents=True, exist_ok=True)
        (self.path(name) / "logs" / "results.json").write_text('{"stage": "fit", "metrics": {"probe": 0.87}}\n')
        return self.path(name)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its bytes' hash: what a refused command must leave unchanged."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
