"""Data throughput, side by side in one process: torchvision ImageFolder + DataLoader vs our WebDataset stream on
the same JPEG images through the same training transform (RandomResizedCrop 224 scale 0.3-1, flip, normalise)
with the same number of workers; then the fraction of a ViT-Tiny/16 I-JEPA training step spent waiting for data
from the shard stream.

Prints JSON lines. Example: python benchmarks/data_throughput.py --images 2000 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402

from data.image_folder import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from data.shard_datamodule import ImageShardDataModule  # noqa: E402
from data.shard_sources import ImageFolderSource  # noqa: E402
from data.shard_writer import write_shards  # noqa: E402
from data.transforms import train_transform  # noqa: E402


def make_jpegs(folder: Path, n: int, side: int, classes: int = 10) -> None:
    """n smooth colour JPEGs (quality 90) in ImageFolder layout: low-frequency noise upsampled, so they compress
    like photographs rather than like white noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (folder / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        image = small.resize((side, side), Image.BICUBIC)
        image.save(folder / f"class{i % classes:02d}" / f"{i:06d}.jpg", quality=90)


def time_pass(make_loader) -> tuple[int, float]:
    """(images, images/s) of one whole pass, worker start-up included (as a training epoch pays it)."""
    loader = make_loader()
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch[0])
    return seen, seen / (time.perf_counter() - start)


def data_wait_fraction(dm: ImageShardDataModule, steps: int, warm: int, batch: int) -> dict:
    """Bare ViT-Tiny/16 I-JEPA training steps (masks, loss, backward, AdamW, EMA) fed by the shard stream."""
    from ijepa import IJEPA, MultiBlockMaskSampler
    from jepa.ema import ema_update

    model = IJEPA(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3, predictor_embed_dim=96,
                  predictor_depth=6, mask_sampler=MultiBlockMaskSampler())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    iterator = iter(dm.train_dataloader())
    waits, totals = [], []
    for step in range(steps + warm):
        start = time.perf_counter()
        batch, _ = dm.strip(next(iterator))
        got = time.perf_counter()
        generator = torch.Generator().manual_seed(step)
        loss, _ = model.jepa_loss(batch, model.sample_masks(batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(model.target_encoder, model.encoder, 0.996)
        if step >= warm:
            waits.append(got - start)
            totals.append(time.perf_counter() - start)
    return {"steps": steps, "batch": batch[0].shape[0], "step_s_median": statistics.median(totals),
            "wait_s_median": statistics.median(waits), "wait_fraction": sum(waits) / sum(totals),
            "images_per_s": steps * batch[0].shape[0] / sum(totals)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--side", type=int, default=256, help="side of the source JPEGs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="passes per pipeline, interleaved")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument("--step_batch", type=int, default=32, help="batch of the ViT-Tiny training steps")
    p.add_argument("--steps", type=int, default=8, help="timed training steps (after 2 warm ones); 0: skip")
    p.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.dir or tempfile.mkdtemp(prefix="data_bench_"))
    folder, shards = work / "images", work / "shards"
    if not folder.exists():
        make_jpegs(folder, args.images, args.side)
    if not shards.exists():
        write_shards(iter(ImageFolderSource(str(folder))), shards, "image_folder", max_count=250, progress=False)
    n_shards = len(list(shards.glob("*.tar")))
    transform = train_transform(224, (0.3, 1.0), True, IMAGENET_MEAN, IMAGENET_STD)
    common = {"host": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "workers": args.workers,
              "batch": args.batch, "torch": torch.__version__, "source_side": args.side}

    def folder_loader():
        return DataLoader(ImageFolder(str(folder), transform=transform), batch_size=args.batch, shuffle=True,
                          num_workers=args.workers, drop_last=False)

    def shard_module(batch):
        return ImageShardDataModule(str(shards), img_size=224, batch_size=batch, num_workers=args.workers,
                                    epoch_samples=args.images)

    def shard_loader():
        dm = shard_module(args.batch)
        loader = dm.train_dataloader()
        loader.batches = -(-args.images // args.batch)  # one pass, like the ImageFolder epoch
        return loader

    # Interleaved passes, so that drift in the machine's speed hits both pipelines alike.
    pipelines = {"imagefolder": folder_loader, "webdataset": shard_loader}
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    sizes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, make in pipelines.items():
            sizes[name], rate = time_pass(make)
            rates[name].append(rate)
    for name, values in rates.items():
        print(json.dumps({"bench": "data_throughput", "pipeline": name, **common, "images_per_pass": sizes[name],
                          "images_per_s_median": statistics.median(values), "images_per_s_best": max(values),
                          "passes": len(values)}), flush=True)
    ratio = [w / f for w, f in zip(rates["webdataset"], rates["imagefolder"])]
    print(json.dumps({"bench": "data_throughput", "ratio_webdataset_over_imagefolder_median":
                      round(statistics.median(ratio), 3), "ratio_per_pass": [round(r, 3) for r in ratio],
                      "shards": n_shards, **common}), flush=True)
    if args.steps:
        wait = data_wait_fraction(shard_module(args.step_batch), args.steps, 2, args.step_batch)
        print(json.dumps({"bench": "data_wait", "model": "ijepa_vit_tiny_16_224", "dtype": "float32",
                          "threads": args.threads, **common, **wait}), flush=True)


if __name__ == "__main__":
    main()
