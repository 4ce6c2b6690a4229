"""Kill-and-resume under 2 gloo processes: an uninterrupted 2-process `jepa fit` of the tiny recipe, then runs in
which one rank is SIGKILLed at a random step (the job is then torn down, as a scheduler would), resumed with
`--ckpt_path auto` on 2 processes; each must end with weights bitwise equal to the uninterrupted run's.

Prints one JSON line per run and a summary. Usage: python tests/helpers/ddp_kill_resume.py [--runs 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.fault_injection import CONFIG, PERIODIC, ROOT, STEPS, TINY, hook, same, weights

DDP = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "jepa.cli", "fit", "--config", str(CONFIG), *TINY, *DDP,
                             f"--trainer.max_steps={STEPS}", f"--trainer.default_root_dir={out}",
                             f"--trainer.callbacks={PERIODIC}", *extra],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: the whole job can be torn down


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def kill_one_rank(out: Path, step: int, rank: int, timeout: float = 600) -> int:
    """Run until rank `rank` kills itself at `step`, then tear the job down (the survivor would wait forever)."""
    proc = start(out, hook("KillAt", step=step, rank=rank))
    deadline = time.time() + timeout
    while not (out / "killed").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return int((out / "killed").exists())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(args.out or tempfile.mkdtemp(prefix="ddp_faults_"))
    rc, log = finish(start(tmp / "straight"))
    assert rc == 0, log[-3000:]
    reference = weights(tmp / "straight")
    equal = 0
    for i in range(args.runs):
        step, rank = rng.randrange(4, STEPS - 1), rng.randrange(2)
        out = tmp / f"kill{i}"
        killed = kill_one_rank(out, step, rank)
        rc, log = finish(start(out, "--ckpt_path=auto"))
        ok = bool(killed) and rc == 0 and same(reference, weights(out))
        equal += ok
        print(json.dumps({"fault": "SIGKILL of one rank", "rank": rank, "step": step, "resumed_rc": rc,
                          "resumed_from": next((line for line in log.splitlines() if "resuming from" in line), None),
                          "same_weights": ok}), flush=True)
    print(json.dumps({"summary": True, "processes": 2, "same_weights": f"{equal}/{args.runs}"}), flush=True)


if __name__ == "__main__":
    main()
