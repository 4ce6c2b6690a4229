"""Fault injection on a tiny `jepa fit` (64 Fashion-MNIST images, 20 steps, checkpoints every 3 steps, drop-path
on so that random states matter): 10 SIGKILLs at random steps then `--ckpt_path auto`, a SIGTERM preemption then
resume, a NaN injected into a batch at a random step, a truncated newest checkpoint, and 20 malformed configs.

Prints one JSON line per run and a summary: runs that ended with the same weights as the uninterrupted run / total,
and configs rejected cleanly (exit 2, one line, no traceback) / total.
Usage: python tests/helpers/fault_injection.py [--seed 0] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "ijepa" / "fmnist_cpu.yaml"
STEPS = 20
TINY = ["--model.embed_dim=32", "--model.depth=2", "--model.num_heads=2", "--model.predictor_embed_dim=16",
        "--model.predictor_depth=1", "--model.drop_path_rate=0.1", "--data.batch_size=8", "--data.limit_train=64",
        "--data.num_workers=0", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.logger=false"]
PERIODIC = json.dumps([{"class_path": "jepa.periodic_checkpoint.PeriodicCheckpoint",
                        "init_args": {"every_n_steps": 3, "keep_last": 2}}])


def jepa(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "jepa.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def fit(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return jepa("fit", "--config", str(CONFIG), *TINY, f"--trainer.max_steps={STEPS}",
                f"--trainer.default_root_dir={out}", f"--trainer.callbacks={PERIODIC}", *extra)


def hook(name: str, **init_args) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": f"tests.helpers.fault_hooks.{name}", "init_args": init_args})


def weights(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def all_checkpoints_finite(out: Path) -> bool:
    for path in (out / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            return False
    return True


def malformed(tmp: Path) -> list[tuple[str, list[str]]]:
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint" * 64)
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("model:\n  class_path: ijepa.IJEPA\n   init_args: [unclosed\n")
    periodic0 = json.dumps([{"class_path": "jepa.periodic_checkpoint.PeriodicCheckpoint",
                             "init_args": {"every_n_steps": 0}}])
    return [
        ("unknown model key", ["--model.bogus_option=1"]),
        ("unknown trainer key", ["--trainer.bogus_option=1"]),
        ("wrong type: lr", ["--model.lr=abc"]),
        ("wrong type: max_steps", ["--trainer.max_steps=many"]),
        ("negative lr", ["--model.lr=-1"]),
        ("warmup fraction > 1", ["--model.warmup_fraction=1.5"]),
        ("EMA momentum > 1", ["--model.ema_momentum=[0.9, 1.5]"]),
        ("negative max_nonfinite_steps", ["--model.max_nonfinite_steps=-1"]),
        ("patch does not divide image", ["--model.patch_size=5"]),
        ("heads do not divide width", ["--model.num_heads=3"]),
        ("mask scale > 1", ["--model.mask_sampler.init_args.target_scale=[0.5, 1.5]"]),
        ("batch size 0", ["--data.batch_size=0"]),
        ("crop scale reversed", ["--data.crop_scale=[0.8, 0.2]"]),
        ("missing dataset folder", ["--data.root=/nonexistent/fashion-mnist"]),
        ("unknown data class", ["--data=data.NoSuchDataModule"]),
        ("unwritable output folder", ["--trainer.default_root_dir=/proc/jepa-run"]),
        ("checkpoint every 0 steps", [f"--trainer.callbacks={periodic0}"]),
        ("missing ckpt_path", ["--ckpt_path=/nonexistent/run.ckpt"]),
        ("damaged ckpt_path", [f"--ckpt_path={garbage}"]),
        ("YAML syntax error", ["--config", str(bad_yaml)]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(args.out or tempfile.mkdtemp(prefix="faults_"))
    report = lambda **kw: print(json.dumps(kw), flush=True)  # noqa: E731

    run = fit(tmp / "straight")
    assert run.returncode == 0, run.stderr[-3000:]
    reference = weights(tmp / "straight")
    equal = total = 0

    for i, step in enumerate(sorted(rng.sample(range(1, STEPS - 1), 10))):
        out = tmp / f"kill{i}"
        killed = fit(out, hook("KillAt", step=step))
        resumed = fit(out, "--ckpt_path=auto")
        ok = killed.returncode == -9 and resumed.returncode == 0 and same(reference, weights(out))
        equal, total = equal + ok, total + 1
        report(fault="SIGKILL", step=step, killed_rc=killed.returncode, resumed_rc=resumed.returncode,
               same_weights=ok)

    step = rng.randrange(1, STEPS - 1)
    out = tmp / "sigterm"
    stopped = fit(out, hook("KillAt", step=step, sig="SIGTERM"))
    resumed = fit(out, "--ckpt_path=auto")
    ok = stopped.returncode == 143 and "preempted: saved step" in stopped.stdout and resumed.returncode == 0 \
        and same(reference, weights(out))
    equal, total = equal + ok, total + 1
    report(fault="SIGTERM", step=step, stopped_rc=stopped.returncode, resumed_rc=resumed.returncode,
           same_weights=ok)

    step = rng.randrange(7, STEPS - 1)
    out = tmp / "truncated"
    killed = fit(out, hook("KillAt", step=step))
    newest = max((out / "checkpoints").glob("step*.ckpt"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    resumed = fit(out, "--ckpt_path=auto")
    ok = resumed.returncode == 0 and "skipping checkpoint" in resumed.stderr and same(reference, weights(out))
    equal, total = equal + ok, total + 1
    report(fault="truncated newest checkpoint", step=step, truncated=newest.name, resumed_rc=resumed.returncode,
           same_weights=ok)

    step = rng.randrange(1, STEPS - 1)
    out = tmp / "nan"
    run = fit(out, hook("PoisonBatch", step=step))
    report(fault="NaN batch", step=step, rc=run.returncode, skipped="non-finite loss, step skipped" in run.stderr,
           checkpoints_finite=all_checkpoints_finite(out), completed=run.returncode == 0,
           note="the step is skipped, so the weights differ from the uninterrupted run by design")

    clean = 0
    cases = malformed(tmp)
    for name, extra in cases:
        config = [] if "--config" in extra else ["--config", str(CONFIG)]
        out = jepa("fit", *config, *TINY, f"--trainer.default_root_dir={tmp / 'malformed'}", *extra)
        lines = out.stderr.strip().splitlines()
        ok = out.returncode == 2 and "Traceback" not in out.stderr and bool(lines) and \
            lines[-1].startswith(("jepa: error:", "usage:", "error:"))
        one_line = [line for line in lines if line.startswith("jepa: error:")]
        clean += ok
        report(fault="malformed config", case=name, rc=out.returncode, clean=ok,
               message=(one_line or lines[-1:] or [""])[0][:200])
    report(summary=True, same_weights=f"{equal}/{total}", configs_rejected_cleanly=f"{clean}/{len(cases)}")


if __name__ == "__main__":
    main()
