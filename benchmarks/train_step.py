"""I-JEPA training-step benchmark, ours beside the official code on identical shapes, masks and dtype.

One step = masks + target-encoder forward + context encoder + predictor + smooth-L1 loss + backward + AdamW step +
EMA update, exactly what both training loops do per batch (data loading excluded). Prints one JSON line per
configuration: step time median / min / max over the timed steps (after warm-up), images/s, peak memory, and with
--reference the official step on the same batch and masks in the same process, interleaved step by step so that
machine drift hits both alike, with the our/official ratios.

Peak memory: on CUDA torch.cuda.max_memory_allocated per configuration; on CPU (--memory, off by default: it reruns
every configuration) a fresh subprocess per implementation runs only that configuration's steps and reports its
peak resident set during the steps (VmHWM reset just before them) and that peak minus the memory held before the
first step (step_rss_mib: activations, gradients, optimiser state; what an implementation changes).
MFU (CUDA only): FLOPs of one step counted by torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions and
attention; forward + backward) / step time / the device's dense peak (--peak_tflops, default 989 = H100 SXM bf16).

    python benchmarks/train_step.py --sizes tiny --batch 16 --modes eager,foreach,compile,ckpt --reference /tmp/official
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ijepa.masks import MultiBlockMaskSampler  # noqa: E402
from jepa.attention import avoid_cudnn_attention  # noqa: E402
from jepa.ema import ema_update  # noqa: E402
from jepa.masking import apply_masks  # noqa: E402
from jepa.compile import compile_networks  # noqa: E402
from jepa.vit import VIT_SIZES, Predictor, VisionTransformer, context_and_predictions  # noqa: E402

MODES = {
    "eager": "fp32, AdamW with torch's default implementation for the device",
    "foreach": "fp32, AdamW(foreach=True)",
    "fused": "fp32, AdamW(fused=True)",
    "bf16": "bf16 autocast, AdamW(fused=True) on CUDA / foreach on CPU",
    "compile": "torch.compile of every transformer block (static shapes: a new graph per token count), fp32 (bf16 "
               "autocast on CUDA), foreach/fused AdamW",
    "pad": "token counts padded to multiples of --pad_tokens and masked out (same values), fp32 (bf16 autocast on "
           "CUDA), foreach/fused AdamW",
    "compile_pad": "compile + pad: torch.compile sees a few token counts instead of one per batch",
    "ckpt": "activation checkpointing in every block, fp32 (bf16 autocast on CUDA), foreach/fused AdamW",
    "shared_ctx": "the predictor's shared-context option (a recipe change: context held once for all target "
                  "blocks), fp32 (bf16 autocast on CUDA), foreach/fused AdamW",
}


def uses_bf16(mode: str, device: torch.device) -> bool:
    """bf16 autocast: always in mode bf16; in the other non-fp32 modes only on CUDA (this project's CPU has no
    native bf16)."""
    return mode == "bf16" or (mode not in ("eager", "foreach", "fused") and device.type == "cuda")


def build(size: str, img: int, patch: int, pred_dim: int, pred_depth: int, seed: int = 0):
    dim, depth, heads = VIT_SIZES[size]
    torch.manual_seed(seed)
    enc = VisionTransformer(img, patch, 3, dim, depth, heads)
    pred = Predictor(enc.grid, dim, pred_dim, pred_depth, heads)
    return enc, pred


def masks_for(batch: int, grid: int, seed: int):
    """The I-JEPA recipe's masks (4 targets of scale 0.15-0.2, context 0.85-1), shared by both implementations."""
    sampler = MultiBlockMaskSampler()
    return sampler(batch, (grid, grid), torch.Generator().manual_seed(seed))


class OurStep:
    def __init__(self, enc, pred, mode: str, device: torch.device, pad_tokens: int = 16) -> None:
        self.enc, self.pred = enc.to(device), pred.to(device)
        self.target = copy.deepcopy(self.enc).requires_grad_(False)
        cuda = device.type == "cuda"
        self.autocast = uses_bf16(mode, device)
        impl = {"eager": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}.get(
            mode, {"fused": True} if cuda else {"foreach": True})
        params = list(self.enc.parameters()) + list(self.pred.parameters())
        self.opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04, **impl)
        if mode == "ckpt":
            self.enc.set_grad_checkpointing(True)
            self.pred.set_grad_checkpointing(True)
        self.pred.shared_context = mode == "shared_ctx"
        if mode.startswith("compile"):
            compile_networks(self.enc, self.target, self.pred)  # in place, as training's model.torch_compile
        self.pad = pad_tokens if mode.endswith("pad") else 0
        self.device = device

    def __call__(self, x: torch.Tensor, masks) -> float:
        ctx = masks.context.to(self.device, non_blocking=True)
        tgts = [t.to(self.device, non_blocking=True) for t in masks.targets]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            with torch.no_grad():
                h = self.target(x)
                h = apply_masks(F.layer_norm(h, (h.size(-1),)), tgts)
            _, p = context_and_predictions(self.enc, self.pred, x, ctx, tgts, self.pad)
            loss = F.smooth_l1_loss(p.float(), h.float())
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        ema_update(self.target, self.enc, 0.996)
        return loss.detach()


class OfficialStep:
    """The official train.py step (forward_target, forward_context, loss, AdamW, per-parameter EMA loop), on the
    official model classes imported from a checkout outside this repository."""

    def __init__(self, checkout: str, size: str, img: int, patch: int, pred_dim: int, pred_depth: int,
                 bf16: bool, device: torch.device, seed: int = 0) -> None:
        sys.path.insert(0, str(Path(checkout).resolve()))
        # the official helper sends INFO logs (the whole model) to stdout: keep stdout for our JSON lines
        with contextlib.redirect_stdout(sys.stderr):
            from src.helper import init_model  # noqa: PLC0415 - the official code, on demand
            from src.utils.tensors import apply_masks as official_apply_masks
            from src.utils.tensors import repeat_interleave_batch

            torch.manual_seed(seed)
            self.enc, self.pred = init_model(device, patch, f"vit_{size}", img, pred_depth, pred_dim)
        self.target = copy.deepcopy(self.enc)
        for p in self.target.parameters():
            p.requires_grad = False
        params = [p for m in (self.enc, self.pred) for p in m.parameters()]
        self.opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04)
        self.apply_masks, self.repeat = official_apply_masks, repeat_interleave_batch
        self.bf16, self.device = bf16, device

    def __call__(self, x: torch.Tensor, masks) -> float:
        masks_enc = [masks.context.to(self.device)]
        masks_pred = [t.to(self.device) for t in masks.targets]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            with torch.no_grad():
                h = self.target(x)
                h = F.layer_norm(h, (h.size(-1),))
                b = len(h)
                h = self.apply_masks(h, masks_pred)
                h = self.repeat(h, b, repeat=len(masks_enc))
            z = self.enc(x, masks_enc)
            z = self.pred(z, masks_enc, masks_pred)
            loss = F.smooth_l1_loss(z, h)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            m = 0.996
            for q, k in zip(self.enc.parameters(), self.target.parameters()):
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        return loss.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(step, x, masks) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(x, masks)
    return counter.get_total_flops()


def peak_rss_of(argv: list[str]) -> dict:
    """Peak resident memory (MiB) of a subprocess running this script with argv (CPU memory measurement)."""
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs), so the peak covers only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny", help="comma-separated ViT sizes: tiny, small, base")
    p.add_argument("--batch", default="16", help="comma-separated batch sizes")
    p.add_argument("--modes", default="eager", help=f"comma-separated: {', '.join(MODES)}")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--pred_dim", type=int, default=384, help="predictor width (the paper's 384)")
    p.add_argument("--pred_depth", type=int, default=6, help="predictor depth")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (docs/design.md: set it explicitly)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reference", default=None, help="checkout of facebookresearch/ijepa, timed side by side")
    p.add_argument("--memory", action="store_true", help="CPU: peak RSS per configuration in fresh subprocesses")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="device dense bf16 peak for MFU (H100 SXM: 989)")
    p.add_argument("--pad_tokens", type=int, default=16, help="modes pad, compile_pad: round token counts up to this")
    p.add_argument("--cudnn_sdp", action="store_true",
                   help="CUDA: leave SDPA's cuDNN backend on (training turns it off: jepa/attention.py says why)")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # internal: ours|official, for --memory
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not args.cudnn_sdp:
        avoid_cudnn_attention(device)  # as jepa.module.JEPA does when training starts
    for size in args.sizes.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            for mode in args.modes.split(","):
                record = run_config(args, size, batch, mode, device)
                print(json.dumps(record), flush=True)
    return 0


def run_config(args, size: str, batch: int, mode: str, device: torch.device) -> dict:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}: use {', '.join(MODES)}")
    enc, pred = build(size, args.img, args.patch, args.pred_dim, args.pred_depth)
    x = torch.randn(batch, 3, args.img, args.img, generator=torch.Generator().manual_seed(0)).to(device)
    steps: dict[str, object] = {}
    if args.only in (None, "ours"):
        steps["ours"] = OurStep(enc, pred, mode, device, args.pad_tokens)
    if args.reference and args.only in (None, "official"):
        steps["official"] = OfficialStep(args.reference, size, args.img, args.patch, args.pred_dim,
                                         args.pred_depth, uses_bf16(mode, device), device)
    grid = enc.grid
    times: dict[str, list[float]] = {k: [] for k in steps}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    peaks = {}
    if args.only:  # a --memory child: the peak of the training steps alone, above the memory held before them
        before, was_reset = rss_mib("VmRSS"), reset_peak_rss()
    for i in range(args.warmup + args.steps):
        masks = masks_for(batch, grid, seed=i)
        for name, step in steps.items():  # interleaved: drift of the machine hits both alike
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            step(x, masks)
            sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated() / 2**20)
    if args.only:  # a --memory child: report its own peak RSS
        peak = rss_mib("VmHWM") if was_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_rss_mib": peak, "step_rss_mib": peak - before, "rss_before_steps_mib": before}
    record = {"config": {"size": size, "img": args.img, "patch": args.patch, "batch": batch, "mode": mode,
                         "mode_means": MODES[mode], "predictor": [args.pred_dim, args.pred_depth],
                         "masks": "4 targets scale 0.15-0.2 aspect 0.75-1.5, context 0.85-1.0"},
              "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "steps_timed": args.steps,
              "cudnn_sdp": torch.backends.cuda.cudnn_sdp_enabled()}
    for name, ts in times.items():
        med = statistics.median(ts)
        entry = {"step_s_median": med, "step_s_min": min(ts), "step_s_max": max(ts), "images_per_s": batch / med}
        if name in peaks:
            entry["peak_mem_mib"] = peaks[name]
        record[name] = entry
    if args.memory and device.type == "cpu":
        base = ["--sizes", size, "--batch", str(batch), "--modes", mode, "--img", str(args.img), "--patch",
                str(args.patch), "--pred_dim", str(args.pred_dim), "--pred_depth", str(args.pred_depth), "--steps",
                "2", "--warmup", "1", "--pad_tokens", str(args.pad_tokens), "--threads", str(args.threads),
                "--device", "cpu"]
        for name in steps:
            extra = ["--reference", args.reference] if name == "official" else []
            record[name].update(peak_rss_of(base + extra + ["--only", name]))
    if device.type == "cuda":
        for name, step in steps.items():  # each implementation's own count (the official attention is 2 bmm)
            flops = step_flops(step, x, masks_for(batch, grid, seed=0))
            record[name]["flops_per_step"] = flops
            record[name]["mfu"] = flops / record[name]["step_s_median"] / (args.peak_tflops * 1e12)
        record["mfu_formula"] = ("FlopCounterMode FLOPs of one step (fwd+bwd, matmul/conv/attention) / median step "
                                 f"time / {args.peak_tflops} TFLOP/s")
    if "official" in record:
        o, u = record["official"], record["ours"]
        record["ratio_images_per_s"] = u["images_per_s"] / o["images_per_s"]
        for key in ("peak_mem_mib", "peak_rss_mib", "step_rss_mib"):
            if key in o and key in u:
                record[f"ratio_{key}"] = u[key] / o[key]
    return record


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
