"""The first N training losses of a recipe, exactly (as float hex), to prove a refactor left training unchanged.

    python benchmarks/loss_trace.py --config configs/ijepa/fmnist_cpu.yaml --steps 20 --out runs/trace/after.json
    python benchmarks/loss_trace.py --compare benchmarks/results/loss_trace/ijepa.json runs/trace/after.json

The run keeps the recipe's schedules (max_steps as configured) and stops after N optimizer steps; it writes nothing
into the recipe's run folder. Bitwise equality holds on one machine and one torch build: other CPUs may round
differently, so compare traces recorded on the same machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def record(config: str, steps: int, extra: list[str]) -> list[str]:
    import lightning as L

    from jepa.cli import build_cli

    class Trace(L.Callback):
        def __init__(self) -> None:
            self.losses: list[str] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss.detach()).hex())
            if len(self.losses) >= steps:
                trainer.should_stop = True

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["fit", "--config", config, f"--trainer.default_root_dir={tmp}", "--trainer.logger=false",
                "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
                "--trainer.enable_progress_bar=false", *extra]
        cli = build_cli(argv, run=False)
        trace = Trace()
        cli.trainer.callbacks.append(trace)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return trace.losses


def cpu_identity() -> str:
    """The CPU's model name and a digest of its instruction-set flags: the kernels torch picks, and so the rounding
    of float results, depend on both."""
    import hashlib

    from jepa.provenance import cpu_model

    flags = ""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        pass
    return f"{cpu_model()} [{hashlib.sha256(flags.encode()).hexdigest()[:12]}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a `jepa fit` config")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", help="write the trace here (JSON)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two traces: exit 1 unless bitwise equal")
    args, overrides = p.parse_known_args(argv)  # the rest goes to `jepa fit`, e.g. --data.root=DIR
    args.overrides = overrides
    if args.compare:
        a, b = (json.loads(Path(path).read_text())["losses"] for path in args.compare)
        equal = a == b
        print(f"{len(a)} vs {len(b)} losses: {'bitwise equal' if equal else 'DIFFERENT'}")
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                print(f"  step {i}: {float.fromhex(x)!r} vs {float.fromhex(y)!r}")
        return 0 if equal else 1
    import torch

    torch.set_num_threads(2)
    losses = record(args.config, args.steps, args.overrides)
    result = {"config": args.config, "steps": args.steps, "overrides": args.overrides, "losses": losses,
              "torch": torch.__version__, "cpu": cpu_identity()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {len(losses)} losses to {args.out}: first {float.fromhex(losses[0]):.6f}, "
          f"last {float.fromhex(losses[-1]):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
