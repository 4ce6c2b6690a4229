#!/usr/bin/env bash
# The one prepared check for a lent GPU (H100 / H200; docs/performance.md): ~5 minutes, torch/timm only.
#   1. the card and the measured bf16 matmul ceiling (8192^3, random data);
#   2. the ViT-B/16 224 px I-JEPA training step, bf16 autocast, batch 256 (the fastest measured), token counts padded
#      to multiples of 16 (model.pad_tokens) under torch.compile (on torch 2.11 inductor failed on the unpadded,
#      changing mask lengths); 25 warm-up steps so that most of the ~7 (context, target) size buckets are compiled
#      before the timed steps;
#      ours beside the official code (REF: a checkout of facebookresearch/ijepa kept outside git, e.g. an ignored
#      .ref/ijepa): images/s, MFU, peak memory;
#   3. a profile of the eager and the padded + compiled step at batch 256: kernel time by kind and the share of the
#      step in which the GPU runs nothing (benchmarks/profile_step.py).
# Measured once already and left out to fit the 10-minute call (docs/performance.md has them): the eager batch
# 64-512 sweep, cuDNN's SDPA backend on (--cudnn_sdp), the shared-context predictor (--modes shared_ctx), the
# planner on the GPU (benchmarks/plan_step.py --devices cuda) and on 2 CPU cores.
# Writes JSON lines under $OUT (the device tool's output folder; /tmp/device_check otherwise).
set -u
OUT=${OUT:-/tmp/device_check}
REF=${REF:-.ref/ijepa}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, timm, lightning; print('torch', torch.__version__, 'timm', timm.__version__, 'lightning', lightning.__version__)" \
  | tee -a "$OUT/gpu.txt"
$PY - <<'EOF' | tee "$OUT/ceiling.json"
import json, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
for _ in range(3):
    a @ b
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(20):
    a @ b
end.record()
torch.cuda.synchronize()
s = start.elapsed_time(end) / 1000 / 20
print(json.dumps({"bf16_matmul_8192_tflops": 2 * 8192**3 / s / 1e12, "device": torch.cuda.get_device_name()}))
EOF
timeout 240 $PY benchmarks/train_step.py --sizes base --batch 256 --modes compile_pad --pad_tokens 16 \
  --steps 20 --warmup 25 --threads 8 --reference "$REF" 2>"$OUT/train_step.err" | tee "$OUT/train_step.jsonl"
# where the step's time goes (benchmarks/profile_step.py): kernels by kind and the device's idle share, eager bf16
# and padded + compiled, batch 256
timeout 200 $PY benchmarks/profile_step.py --size base --batch 256 --mode bf16 compile_pad --warmup 30 --steps 8 \
  --threads 8 2>"$OUT/profile_step.err" | tee "$OUT/profile_step.jsonl"
tail -n 5 "$OUT/train_step.err" "$OUT/profile_step.err"
