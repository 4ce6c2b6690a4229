"""Video benchmarks: clips/s of the two clip pipelines, and the training-step time of the small V-JEPA recipe beside
its frame-wise I-JEPA baseline.

1. Clips/s over whole passes (worker start-up included, as an epoch pays it), interleaved so that drift in the
   machine's speed hits both alike:
   - shards: moving-Fashion-MNIST clips written once as H.264 mp4 shards, decoded with PyAV and cropped with one
     RandomResizedCrop per clip (ClipShardDataModule: num_frames, frame_step), as a real video dataset is read;
   - generator: the same clips drawn on the fly by MovingFashionMNISTDataModule (the recipe's default data).
2. Training step (masks + target forward + context encoder + predictor + loss + backward + AdamW + EMA; data
   excluded) of the models in the two recipes' configs, on real clips / frames: median / min / max over the timed
   steps, clips/s or images/s.

Prints JSON lines. Example: python benchmarks/video.py --clips 512 --workers 2
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from data.fashion_mnist import MEAN, STD, find_root  # noqa: E402
from data.moving_fmnist import MovingFashionMNISTDataModule  # noqa: E402
from data.shard_datamodule import ClipShardDataModule  # noqa: E402
from data.shard_sources import MovingFashionMNISTSource  # noqa: E402
from data.shard_writer import write_shards  # noqa: E402
from jepa.ema import ema_update  # noqa: E402

RECIPES = {"vjepa": ROOT / "configs/vjepa/moving_fmnist_cpu.yaml",
           "ijepa_frames": ROOT / "configs/ijepa/moving_fmnist_frames_cpu.yaml"}


def instantiate(spec):
    """A config's {class_path, init_args} (nested ones too) -> the object."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, name = spec["class_path"].rsplit(".", 1)
        args = {k: instantiate(v) for k, v in spec.get("init_args", {}).items()}
        return getattr(importlib.import_module(module), name)(**args)
    return spec


def clips_per_s(loader, limit: int) -> tuple[int, float]:
    """(clips, clips/s) of one pass of `limit` clips."""
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch[0])
        if seen >= limit:
            break
    return seen, seen / (time.perf_counter() - start)


def step_times(config: Path, batch: torch.Tensor, steps: int, warm: int) -> list[float]:
    """Seconds per training step of the recipe's model on `batch` (fixed masks keyed by the step)."""
    model = instantiate(yaml.safe_load(config.read_text())["model"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04, foreach=True)
    times = []
    for step in range(warm + steps):
        start = time.perf_counter()
        masks = model.sample_masks(batch, torch.Generator().manual_seed(step))
        loss, _ = model.jepa_loss(batch, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(model.target_encoder, model.encoder, 0.998)
        if step >= warm:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clips", type=int, default=512, help="clips per pass (and clips written to shards)")
    p.add_argument("--num_frames", type=int, default=8, help="frames per training clip")
    p.add_argument("--frame_step", type=int, default=2, help="shards: take every frame_step-th frame of 16")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32, help="clips per batch (the V-JEPA recipe's batch)")
    p.add_argument("--repeats", type=int, default=3, help="passes per pipeline, interleaved")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per recipe (after 2 warm); 0: skip")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument("--data_root", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--dir", default=None, help="working folder for the shards (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = str(find_root(args.data_root))
    common = {"host": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "workers": args.workers, "batch": args.batch, "num_frames": args.num_frames}

    shards = Path(args.dir or tempfile.mkdtemp(prefix="video_bench_")) / "shards"
    if not shards.exists():
        source = MovingFashionMNISTSource(root, "train", 0, args.clips, num_frames=args.num_frames * args.frame_step)
        write_shards(iter(source), shards, "moving_fmnist", max_count=64, progress=False)

    def shard_loader():
        dm = ClipShardDataModule(str(shards), img_size=64, num_frames=args.num_frames, frame_step=args.frame_step,
                                 crop_scale=(0.3, 1.0), mean=MEAN * 3, std=STD * 3, batch_size=args.batch,
                                 num_workers=args.workers, epoch_samples=args.clips)
        loader = dm.train_dataloader()
        loader.batches = -(-args.clips // args.batch)
        return loader

    def generator_loader():
        dm = MovingFashionMNISTDataModule(root, train_clips=args.clips, num_frames=args.num_frames, size=64,
                                          batch_size=args.batch, num_workers=args.workers)
        dm.setup("fit")
        return dm.train_dataloader()

    pipelines = {"shards_pyav_crop": shard_loader, "generator": generator_loader}
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.repeats):
        for name, make in pipelines.items():
            seen, rate = clips_per_s(make(), args.clips)
            rates[name].append(rate)
    for name, values in rates.items():
        print(json.dumps({"bench": "clips_per_s", "pipeline": name, **common, "clips_per_pass": seen,
                          "clips_per_s_median": round(statistics.median(values), 1),
                          "clips_per_s_best": round(max(values), 1), "passes": len(values)}), flush=True)

    if args.steps:
        dm = MovingFashionMNISTDataModule(root, train_clips=args.batch, num_frames=args.num_frames, size=64,
                                          batch_size=args.batch, num_workers=0)
        dm.setup("fit")
        clips = next(iter(dm.train_dataloader()))[0]  # [B, T, 1, 64, 64], normalised
        for name, config in RECIPES.items():
            batch = clips if name == "vjepa" else clips.flatten(0, 1)[: 4 * args.batch]  # same tokens per step
            times = step_times(config, batch, args.steps, 2)
            median = statistics.median(times)
            print(json.dumps({"bench": "train_step", "recipe": name, "config": str(config.relative_to(ROOT)),
                              **common, "inputs": list(batch.shape), "dtype": "float32", "threads": args.threads,
                              "step_s_median": round(median, 4), "step_s_min": round(min(times), 4),
                              "step_s_max": round(max(times), 4), "inputs_per_s": round(len(batch) / median, 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
