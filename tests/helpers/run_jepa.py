"""Running the `jepa` command from tests: in a subprocess (so its exit code and stderr are the user's), with a tiny
version of the quickstart recipe, and a free port for process groups."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "ijepa" / "fmnist_cpu.yaml"
TINY_ARGS = ["--model.embed_dim=32", "--model.depth=2", "--model.num_heads=2", "--model.predictor_embed_dim=16",
             "--model.predictor_depth=1", "--data.batch_size=8", "--data.limit_train=64", "--data.num_workers=0",
             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def jepa(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "jepa.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
