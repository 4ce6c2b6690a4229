"""The quickstart recipe's first 20 training losses equal the committed trace (benchmarks/results/loss_trace/),
recorded before the training module was recomposed: bitwise on a CPU of the same model and instruction set with the
torch build that recorded it, to float rounding elsewhere."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from loss_trace import cpu_identity, record  # noqa: E402


def test_quickstart_recipe_losses_equal_the_committed_trace(fmnist_root):
    trace = json.loads((ROOT / "benchmarks" / "results" / "loss_trace" / "ijepa.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as the trace was recorded: the reduction order depends on the thread count
    try:
        losses = record(str(ROOT / trace["config"]), trace["steps"], [f"--data.root={fmnist_root}", *trace["overrides"]])
    finally:
        torch.set_num_threads(threads)
    if trace["cpu"] == cpu_identity() and trace["torch"] == torch.__version__:
        assert losses == trace["losses"]
    else:
        assert all(math.isclose(float.fromhex(a), float.fromhex(b), rel_tol=1e-4)
                   for a, b in zip(losses, trace["losses"], strict=True))
