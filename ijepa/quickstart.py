"""`jepa quickstart`: pretrain I-JEPA on Fashion-MNIST, then probe the frozen encoder beside random init and pixels.

The pretraining is exactly `jepa fit --config configs/ijepa/fmnist_cpu.yaml` (same CLI, same config); the probe
rows all use the same linear-probe protocols on the full 60k/10k split.
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Timer

from data.fashion_mnist import find_root, load_split
from eval.collapse import spread, summary
from eval.probe import (
    KnnConfig,
    Row,
    fashion_mnist,
    frozen_copy,
    markdown_table,
    probe_rows,
    public,
)
from ijepa.mask_plot import plot_masks
from jepa.cli import build_cli
from jepa.io import write_json, write_text
from jepa.outputs import check_writable, refuse_clobber
from jepa.periodic_checkpoint import set_resume_hint
from jepa.preflight import clear_checkpoints, resolve_auto_checkpoint
from jepa.provenance import provenance
from jepa.run_record import RunRecord
from jepa.seeding import fit_seed_args

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "ijepa" / "fmnist_cpu.yaml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepa quickstart", description=__doc__)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pretraining recipe (a `jepa fit` config)")
    p.add_argument("--out", default="runs/quickstart", help="output folder: logs, checkpoint, results, plots")
    p.add_argument("--data_root", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, masks and data order (the random-init row is this seed's start)")
    p.add_argument("--max_epochs", type=int, default=None,
                   help="train for N epochs instead of the recipe's step count (lifts its max_steps)")
    p.add_argument("--max_steps", type=int, default=None, help="stop pretraining after N optimizer steps")
    p.add_argument("--limit_train", type=int, default=0, help="pretrain on the first N images only (0: all)")
    p.add_argument("--protocols", default="avg,avg+2x2",
                   help="probe protocols, comma-separated (avg, avg+2x2, flat); flat adds ~2 min on 2 CPU cores")
    p.add_argument("--probe_train_limit", type=int, default=0, help="probe on N training images (0: all 60k)")
    p.add_argument("--probe_test_limit", type=int, default=0, help="score N test images (0: all 10k)")
    p.add_argument("--no_progress", action="store_true", help="hide the training progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest intact checkpoint (one stopped midway: same "
                        "arguments); its pretraining seconds add up across the runs")
    return p


def fit_args(args, out: Path) -> list[str]:
    argv = ["fit", "--config", args.config, f"--trainer.default_root_dir={out}",  # logs and checkpoints follow it
            *fit_seed_args(args.seed)]
    if args.data_root:
        argv.append(f"--data.root={args.data_root}")
    if args.max_epochs is not None:  # the recipe caps by max_steps; an epoch count must lift that cap
        argv += [f"--trainer.max_epochs={args.max_epochs}", "--trainer.max_steps=-1"]
    if args.max_steps is not None:
        argv.append(f"--trainer.max_steps={args.max_steps}")
    if args.limit_train:
        argv.append(f"--data.limit_train={args.limit_train}")
    if args.no_progress:
        argv.append("--trainer.enable_progress_bar=false")
    return argv


def main(argv: list[str]) -> int:
    """pretrain I-JEPA on Fashion-MNIST, probe it, print the results table"""
    args = parser().parse_args(argv)
    out = Path(args.out)
    if args.resume and args.overwrite:
        parser().error("--resume continues the run in --out, --overwrite replaces it: pass one")
    if not (args.overwrite or args.resume):
        refuse_clobber("--out", out, "pass --overwrite to replace it, or --resume to continue it")
    check_writable("--out", out)
    find_root(args.data_root)  # fail now, with the install hint, not after building a model
    started = time.time()
    seconds: dict[str, float] = {}

    cli = build_cli(fit_args(args, out), run=False)
    model, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    # the seeded start, before any checkpoint is loaded: the very weights pretraining starts from, resumed or not
    random_init = frozen_copy(model.target_encoder)
    resume_from = resolve_auto_checkpoint(trainer) if args.resume else None
    set_resume_hint(trainer, "--resume")
    if not args.resume:
        clear_checkpoints(trainer)  # an earlier run's, when told to overwrite it
    timer = Timer()  # Lightning saves its elapsed time in every checkpoint: a resumed run's seconds add up
    trainer.callbacks.append(timer)

    # A picture of the masks the recipe samples, on real training images.
    images = load_split(args.data_root, "train")[0][:6].float() / 255
    masks = model.mask_sampler(6, (model.encoder.grid, model.encoder.grid), torch.Generator().manual_seed(0))
    out.mkdir(parents=True, exist_ok=True)  # every check has passed: the run starts here
    plot_masks(images, masks, model.encoder.grid, out / "masks.png")

    t0 = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    seconds["pretrain"] = round(timer.time_elapsed("train"), 1)
    earlier = max(0.0, timer.time_elapsed("train") - (time.time() - t0))  # the earlier runs' training seconds
    record = next(cb for cb in trainer.callbacks if isinstance(cb, RunRecord))
    fit_record = json.loads(record.path.read_text()) if record.path else {}

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    t0 = time.time()
    patch = model.hparams.patch_size
    rows = [Row("I-JEPA", frozen_copy(model.target_encoder), {}, patch), Row("random init", random_init, {}, patch),
            Row("raw pixels", None, {}, patch)]
    knn = KnnConfig(protocols=("avg",))
    data = fashion_mnist(args.data_root, args.probe_train_limit, args.probe_test_limit)
    rows = public(probe_rows(rows, data, protocols, knn=knn))  # linear + kNN; `jepa probe` adds the attentive probe
    seconds["probe"] = round(time.time() - t0, 1)
    # how spread out the features are (near collapse or not), on 2,000 training images: never the test split
    collapse = spread({"I-JEPA": model.target_encoder, "random init": random_init}, data.train_x[-2000:], data.mean,
                      data.std)
    seconds["total"] = round(time.time() - started + earlier, 1)

    table = markdown_table(rows, protocols, knn)
    checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else None
    results = {
        "command": "jepa quickstart " + shlex.join(argv),
        "date": time.strftime("%Y-%m-%d"),
        "seed": args.seed,
        "resumed_from": resume_from,
        "rows": rows,
        "protocols": protocols,
        "seconds": seconds,
        "pretrain": {
            "optimizer_steps": trainer.global_step,
            "epochs": trainer.current_epoch,
            "images_per_second": round(trainer.global_step * datamodule.batch_size / max(seconds["pretrain"], 1e-9), 1),
            "final_metrics": fit_record.get("metrics"),
            "checkpoint": checkpoint,
        },
        "feature_spread": collapse,
        "config": record.config_text,
        "plots": {"training_curves": fit_record.get("training_curves_png"), "masks": str(out / "masks.png")},
        "provenance": provenance(record.config_text),
    }
    write_json(out / "results.json", results)
    write_text(out / "results.md", f"# Quickstart: I-JEPA on Fashion-MNIST\n\n{table}\n")
    print(f"\n{table}\n\n{summary(collapse)}\n\npretraining {seconds['pretrain']} s ({trainer.global_step} steps), "
          f"probes {seconds['probe']} s, "
          f"total {seconds['total']} s\nwrote {out / 'results.json'}, {out / 'results.md'}, plots in {out}")
    return 0
