"""Where one I-JEPA training step spends its time: torch.profiler over a few warm steps of benchmarks/train_step.py's
step, kernels grouped by kind (matmul, attention, layer norm, fused elementwise, optimiser, copies), and the share of
the step's wall time in which the device runs no kernel at all (the host launching too slowly: the case for CUDA
graphs, not for faster kernels).

    python benchmarks/profile_step.py --size base --batch 256 --mode compile_pad --warmup 30 --steps 8

Prints one JSON line: seconds per step (wall), device-busy seconds per step, the idle fraction, seconds and fraction
per kind, and the 15 slowest kernels. On CPU (the tests) the kinds come from operator names instead of kernels.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from train_step import MODES, OurStep, build, masks_for, sync  # noqa: E402
from jepa.attention import avoid_cudnn_attention  # noqa: E402

# first match wins: kernel (CUDA) or operator (CPU) names of each kind
KINDS = [
    ("attention", r"flash|fmha|attention|sdpa|efficient_attention|softmax"),
    ("optimizer_ema", r"adam|multi_tensor|foreach|lerp"),
    ("layer_norm", r"layer_norm|layernorm|native_layer_norm"),
    ("matmul", r"gemm|matmul|mm_|_mm\b|\bmm\b|addmm|bmm|cutlass|sm90_xmma|nvjet|linear|conv"),
    ("copy_cast", r"copy|cast|to_copy|memcpy|memset|fill|cat|index|gather|scatter"),
    ("fused_elementwise", r"triton|elementwise|vectorized|reduce|gelu|mul|add|div"),
]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return "other"


def profile_step(size: str, batch: int, mode: str, warmup: int, steps: int, device: torch.device,
                 img: int = 224, patch: int = 16, pred_dim: int = 384, pred_depth: int = 6,
                 pad_tokens: int = 16) -> dict:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}: use {', '.join(MODES)}")
    enc, pred = build(size, img, patch, pred_dim, pred_depth)
    step = OurStep(enc, pred, mode, device, pad_tokens)
    x = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(0)).to(device)
    grid = enc.grid
    for i in range(warmup):
        step(x, masks_for(batch, grid, seed=i))
    sync(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for i in range(steps):
            step(x, masks_for(batch, grid, seed=warmup + i))
        sync(device)
        wall = (time.perf_counter() - start) / steps
    per_kind: dict[str, float] = {}
    kernels, launches = [], 0
    for event in prof.key_averages():
        if cuda:
            seconds = event.self_device_time_total / 1e6 / steps
            if seconds <= 0 or event.device_type != torch.autograd.DeviceType.CUDA:
                continue
        else:
            seconds = event.self_cpu_time_total / 1e6 / steps
            if seconds <= 0 or not event.key.startswith("aten::"):
                continue
        kind = kind_of(event.key)
        per_kind[kind] = per_kind.get(kind, 0.0) + seconds
        kernels.append((seconds, event.key[:120]))
        launches += event.count
    busy = sum(per_kind.values())
    if busy <= 0:
        raise SystemExit("the profiler recorded no kernel or operator time: nothing to attribute")
    kernels.sort(reverse=True)
    return {"config": {"size": size, "batch": batch, "mode": mode, "img": img, "patch": patch,
                       "predictor": [pred_dim, pred_depth], "pad_tokens": pad_tokens, "steps_profiled": steps,
                       "warmup": warmup},
            "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
            "step_s_wall": wall, "busy_s_per_step": busy, "kernels_per_step": launches / steps,
            "idle_fraction": max(0.0, 1.0 - busy / wall) if cuda else None,
            "seconds_per_kind": {k: round(v, 6) for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
            "fraction_per_kind": {k: round(v / busy, 4) for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
            "slowest": [{"name": n, "s_per_step": round(s, 6), "kind": kind_of(n)} for s, n in kernels[:15]]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="tiny")
    p.add_argument("--batch", type=int, nargs="+", default=[8], help="one JSON line per batch size")
    p.add_argument("--mode", nargs="+", default=["eager"], help=f"one JSON line per mode: {', '.join(MODES)}")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--steps", type=int, default=4, help="profiled steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    avoid_cudnn_attention(device)  # as training does
    for batch in args.batch:
        for mode in args.mode:
            print(json.dumps(profile_step(args.size, batch, mode, args.warmup, args.steps, device, args.img)),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
