"""Wall seconds to reach 80 % and 85 % average-pooled linear accuracy on Fashion-MNIST: our recipe beside the official
I-JEPA code's paper recipe, on the same CPU, data, architecture and probe.

Each arm trains once and saves its target encoder along the way (`snapshots/<arm>/step*.pt`, with the wall seconds
since the arm was launched, start-up included). Afterwards every snapshot is scored with the quickstart's converged
average-pooled linear probe (60k train / 10k test; the figures choose nothing), and an arm's time to a threshold is
the seconds of its first snapshot at or above it (so at most one snapshot interval late).
- ours: `jepa fit --config CONFIG` (default: the full recipe, configs/ijepa/fmnist_full.yaml), snapshots taken by
  the Snapshots callback below.
- official: the official code (a facebookresearch/ijepa checkout given by --reference, imported as
  benchmarks/train_step.py does): its ViT and predictor, multi-block MaskCollator, optimiser groups and LR / weight
  decay schedules (src.helper.init_opt), EMA schedule and train.py step, with the paper recipe (batch 256, LR 2e-4 ->
  1e-3 -> 1e-6, weight decay 0.04 -> 0.4, EMA 0.996 -> 1, 4 targets of scale 0.15-0.2) at CONFIG's encoder and
  predictor sizes (the full recipe's: ViT 128 x 4, patch 4, predictor 64 x 3) and our augmentation, for
  --official_epochs epochs.

Arms and probes are resumable steps: an arm whose snapshots are complete is not trained again, the official arm
continues from its saved state after a stop (SIGTERM / SIGINT save it; its seconds count training sittings only), a
probed snapshot is not probed again (`probes.json`), so the measurement may span several sittings. Time only on an
idle machine.

    python benchmarks/time_to_accuracy.py --reference ../ijepa --out runs/time_to_accuracy --summary
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.recipe_summary import RESULTS, markdown  # noqa: E402
from data.resumable import KeyedDataset, ResumableSampler  # noqa: E402
from jepa.checkpoint import load_strict  # noqa: E402
from jepa.config_files import config_chain, read_config  # noqa: E402
from jepa.io import atomic_write, write_json, write_text  # noqa: E402
from jepa.provenance import cpu_model  # noqa: E402
from jepa.vit import VisionTransformer, encoder_args  # noqa: E402

THRESHOLDS = (0.80, 0.85)
DEFAULT_CONFIG = "configs/ijepa/fmnist_full.yaml"
MIN_KEEP = 4  # the official collator's, as our recipes' mask samplers
# what the official arm takes from our recipe's model, so the two arms differ in code and recipe only
ARCH_KEYS = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")
PREDICTOR_KEYS = ("predictor_embed_dim", "predictor_depth")


def recipe_architecture(config: str) -> tuple[dict, dict]:
    """(encoder, predictor) sizes of a `jepa fit` config's model, its bases merged in order, for the official arm."""
    merged: dict = {}
    for path in config_chain(config):
        merged.update((read_config(path).get("model") or {}).get("init_args") or {})
    missing = [k for k in (*ARCH_KEYS, *PREDICTOR_KEYS) if k not in merged]
    if missing:
        raise SystemExit(f"--config {config}: model.init_args names no {', '.join(missing)} (the official arm copies "
                         "the recipe's architecture)")
    return {k: merged[k] for k in ARCH_KEYS}, {k: merged[k] for k in PREDICTOR_KEYS}


def save_snapshot(folder: Path, step: int, seconds: float, arch: dict, state: dict) -> Path:
    path = folder / f"step{step:09d}.pt"
    snapshot = {"step": step, "seconds": round(seconds, 1), "encoder_args": arch,
                "target_encoder": {k: v.detach().cpu().clone() for k, v in state.items()}}
    return atomic_write(path, lambda tmp: torch.save(snapshot, tmp))


class Snapshots(L.Callback):
    """Saves the target encoder every `every_n_steps` optimizer steps and at the end, with the wall seconds since
    `start` (a time.time() stamp taken when the run was launched)."""

    def __init__(self, folder: str, every_n_steps: int, start: float) -> None:
        self.folder, self.every, self.start = Path(folder), every_n_steps, start
        self.saved_step = -1

    def _save(self, trainer, pl_module) -> None:
        if trainer.global_step == self.saved_step:
            return  # the last interval fell on the final step
        self.saved_step = trainer.global_step
        save_snapshot(self.folder, trainer.global_step, time.time() - self.start, encoder_args(pl_module.hparams),
                      pl_module.target_encoder.state_dict())

    def on_train_start(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module)  # step 0: the arm's random init (or where a resumed run starts)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._save(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module)


def train_ours(config: str, folder: Path, every: int, seed: int, limit_train: int = 0) -> None:
    start = time.time()
    argv = [sys.executable, "-m", "jepa.cli", "fit", "--config", config, f"--seed_everything={seed}",
            f"--trainer.default_root_dir={folder / 'run'}", "--trainer.enable_progress_bar=false",
            "--trainer.callbacks+=benchmarks.time_to_accuracy.Snapshots",
            f"--trainer.callbacks.folder={folder}", f"--trainer.callbacks.every_n_steps={every}",
            f"--trainer.callbacks.start={start}", f"--data.limit_train={limit_train}"]
    subprocess.run(argv, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def smallest_target_block(arch: dict, scale: tuple[float, float] = (0.15, 0.2),
                          aspect: tuple[float, float] = (0.75, 1.5)) -> int:
    """Tokens of the smallest target block the official MaskCollator's size rule (multiblock.py's _sample_block_size)
    can draw on the recipe's grid. It redraws every target block of min_keep tokens or fewer, forever when none can be
    larger, and cannot hold a 1-token block at all, so the official arm refuses a grid with blocks that small."""
    side = arch["img_size"] // arch["patch_size"]
    smallest = side * side
    for s in (scale[0] + k * (scale[1] - scale[0]) / 50 for k in range(51)):
        for ar in (aspect[0] + k * (aspect[1] - aspect[0]) / 50 for k in range(51)):
            keep = int(side * side * s)
            h, w = min(round(math.sqrt(keep * ar)), side - 1), min(round(math.sqrt(keep / ar)), side - 1)
            smallest = min(smallest, h * w)
    return smallest


def official_models(reference: str, seed: int, arch: dict, predictor_arch: dict):
    """The official code's encoder, predictor and target encoder at our recipe's sizes, initialised as its train.py
    does under `seed`."""
    sys.path.insert(0, str(Path(reference).resolve()))
    from src.models.vision_transformer import VisionTransformer as OfficialViT  # noqa: PLC0415 - the official code
    from src.models.vision_transformer import VisionTransformerPredictor

    torch.manual_seed(seed)
    a = arch
    encoder = OfficialViT(img_size=[a["img_size"]], patch_size=a["patch_size"], in_chans=a["in_chans"],
                          embed_dim=a["embed_dim"], depth=a["depth"], num_heads=a["num_heads"], mlp_ratio=4,
                          qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    predictor = VisionTransformerPredictor(num_patches=encoder.patch_embed.num_patches, embed_dim=a["embed_dim"],
                                           predictor_embed_dim=predictor_arch["predictor_embed_dim"],
                                           depth=predictor_arch["predictor_depth"], num_heads=a["num_heads"])
    return encoder, predictor, copy.deepcopy(encoder).requires_grad_(False)


def arm_loader(dataset, batch_size: int, seed: int, step: int, collate_fn, num_workers: int = 1):
    """The rest of the epoch that `step` falls in, in that epoch's seeded order (data.resumable's sampler over
    (epoch, index) keys), so a resumed arm trains on the batches and crops an unbroken one would have."""
    epoch, skip = divmod(step, len(dataset) // batch_size)
    sampler = ResumableSampler(dataset, 1, 0, seed, {"epoch": epoch, "consumed": skip * batch_size})
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, drop_last=True, num_workers=num_workers,
                                       collate_fn=collate_fn, worker_init_fn=ignore_stop_signals)


def ignore_stop_signals(_worker_id: int) -> None:
    """A data worker's start: a stop signal sent to the whole process group (Ctrl-C, `timeout`) is the main
    process's to handle after its step; a worker dying of it would crash the main process mid-step instead."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def train_official(reference: str, folder: Path, epochs: int, every: int, seed: int, limit_train: int = 0,
                   batch_size: int = 256, config: str = DEFAULT_CONFIG) -> bool:
    """The official train.py loop at the paper recipe (see the module docstring), single process, fp32. Resumable:
    every snapshot also saves the arm's state (`state.pt`: weights, optimizer, step, seconds trained), SIGTERM / SIGINT
    save it after the current step and stop, and a later call continues from it (schedules advanced to the saved step,
    the epoch's data order continued, seconds counted on from the saved ones). True once the arm is complete."""
    start = time.time()
    a, predictor_arch = recipe_architecture(config)
    smallest = smallest_target_block(a)
    if smallest <= MIN_KEEP:
        side = a["img_size"] // a["patch_size"]
        raise SystemExit(f"--config {config}: its {side} x {side} token grid gives target blocks of {smallest} "
                         f"token(s), which the official MaskCollator (min_keep {MIN_KEEP}) redraws forever: the "
                         "official arm needs a finer grid")
    encoder, predictor, target = official_models(reference, seed, a, predictor_arch)
    from src.helper import init_opt  # noqa: PLC0415 - the official code, on path since official_models
    from src.masks.multiblock import MaskCollator
    from src.utils.tensors import apply_masks, repeat_interleave_batch

    from data.fashion_mnist import MEAN, STD, TensorImageDataset, find_root, load_split
    from data.transforms import train_transform

    images, labels = load_split(find_root(None), "train")
    if limit_train:
        images, labels = images[:limit_train], labels[:limit_train]
    transform = train_transform(a["img_size"], (0.3, 1.0), True, MEAN, STD)
    dataset = KeyedDataset(TensorImageDataset(images, labels), transform, seed)  # crops keyed: a resume redraws them
    collator = MaskCollator(input_size=(a["img_size"], a["img_size"]), patch_size=a["patch_size"],
                            enc_mask_scale=(0.85, 1.0), pred_mask_scale=(0.15, 0.2), aspect_ratio=(0.75, 1.5),
                            nenc=1, npred=4, min_keep=MIN_KEEP, allow_overlap=False)
    ipe = len(dataset) // batch_size
    total = ipe * epochs
    optimizer, _, lr_schedule, wd_schedule = init_opt(encoder, predictor, ipe, start_lr=2e-4, ref_lr=1e-3,
                                                      warmup=0.1 * epochs, num_epochs=epochs, wd=0.04, final_wd=0.4,
                                                      final_lr=1e-6, ipe_scale=1.0)
    modules = {"encoder": encoder, "predictor": predictor, "target": target, "optimizer": optimizer}
    state_path, step, trained = folder / "state.pt", 0, 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["total"] != total:
            raise SystemExit(f"{state_path} is an arm of {state['total']} steps, not {total}: give the same "
                             "--official_epochs and --limit_train, or delete the folder")
        for name, module in modules.items():
            module.load_state_dict(state[name])
        step, trained = state["step"], state["seconds"]
        print(f"official arm: resuming at step {step} of {total} ({trained:.0f} s trained)", flush=True)
    else:
        save_snapshot(folder, 0, time.time() - start, a, target.state_dict())  # the arm's random init
    for _ in range(step):
        lr_schedule.step()
        wd_schedule.step()
    collator._itr_counter.value = step - 1  # its masks go on from the saved step's

    def save(snapshot: bool) -> None:
        seconds = trained + time.time() - start
        if snapshot:
            save_snapshot(folder, step, seconds, a, target.state_dict())
        state = {"step": step, "total": total, "seconds": seconds,
                 **{name: module.state_dict() for name, module in modules.items()}}
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))

    stop = []
    previous = {sig: signal.signal(sig, lambda *_: stop.append(True)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while step < total:
            for (imgs, *_), masks_enc, masks_pred in arm_loader(dataset, batch_size, seed, step, collator):
                lr_schedule.step()
                wd_schedule.step()
                with torch.no_grad():
                    h = target(imgs)
                    h = F.layer_norm(h, (h.size(-1),))
                    h = repeat_interleave_batch(apply_masks(h, masks_pred), len(h), repeat=len(masks_enc))
                z = predictor(encoder(imgs, masks_enc), masks_enc, masks_pred)
                loss = F.smooth_l1_loss(z, h)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                m = 0.996 + step * (1.0 - 0.996) / total  # the official linear EMA schedule
                with torch.no_grad():
                    for q, k in zip(encoder.parameters(), target.parameters()):
                        k.mul_(m).add_((1.0 - m) * q.detach())
                step += 1
                if not math.isfinite(loss.item()):
                    raise SystemExit(f"official arm: non-finite loss at step {step}")
                if step % every == 0 or step == total:
                    save(snapshot=True)
                if stop and step < total:
                    save(snapshot=False)
                    print(f"official arm: stopped at step {step} of {total}, state saved; run again to resume",
                          flush=True)
                    return False
    finally:  # after the arm, Ctrl-C stops the probes again
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return True


def probe_snapshot(snapshot: dict, path: Path, limit: int = 0) -> float:
    """The quickstart's average-pooled linear probe (test split) of a snapshot's target encoder (`path`: where it
    was read, for errors)."""
    from eval.probe import KnnConfig, Row, fashion_mnist, frozen_copy, probe_rows

    encoder = VisionTransformer(**snapshot["encoder_args"])
    load_strict(encoder, snapshot["target_encoder"], str(path))
    row = Row("snapshot", frozen_copy(encoder), {"snapshot": str(path)}, encoder.patch_size)
    result = probe_rows([row], fashion_mnist(train_limit=limit, test_limit=limit), ("avg",),
                        knn=KnnConfig(enabled=False), log=lambda *_: None)
    return result["snapshot"]["linear"]["avg"]["test_acc"]


def seconds_to(points: list[dict], threshold: float) -> float | None:
    """Seconds of the earliest snapshot at or above `threshold` (None: never reached)."""
    reached = [p["seconds"] for p in points if p["avg"] >= threshold]
    return min(reached) if reached else None


def summarise(probes: dict) -> dict:
    """probes: arm -> [{step, seconds, avg}] -> per arm its seconds to each threshold, and the official / ours ratio
    at 85 % (None unless both arms reached it)."""
    out = {"arms": {}}
    for arm, points in probes.items():
        points = sorted(points, key=lambda p: p["seconds"])
        out["arms"][arm] = {"points": points, **{f"s_to_{round(100 * t)}": seconds_to(points, t) for t in THRESHOLDS},
                            "best_avg": max((p["avg"] for p in points), default=None)}
    ours = out["arms"].get("ours", {}).get("s_to_85")
    official = out["arms"].get("official", {}).get("s_to_85")
    out.update(ours_s_to_85=ours, official_s_to_85=official,
               ratio=round(official / ours, 2) if ours and official else None)
    # only ours reached 85 %: the official code took longer than all it trained, so the ratio is at least that
    trained = max((p["seconds"] for p in out["arms"].get("official", {}).get("points", [])), default=None)
    if ours and official is None and trained:
        out.update(official_trained_s=trained, ratio_at_least=round(trained / ours, 2))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default="ours,official", help="comma-separated: ours, official")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="our recipe (a `jepa fit` config); the official arm trains its architecture")
    p.add_argument("--every_ours", type=int, default=940, help="our optimizer steps between snapshots (1 epoch)")
    p.add_argument("--reference", default=None, help="checkout of facebookresearch/ijepa (the official arm)")
    p.add_argument("--official_epochs", type=int, default=20)
    p.add_argument("--every_official", type=int, default=468, help="official steps between snapshots (2 epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit_train", type=int, default=0, help="train both arms on the first N images (a smoke run)")
    p.add_argument("--probe_limit", type=int, default=0, help="probe on N train and N test images (a smoke run)")
    p.add_argument("--out", default="runs/time_to_accuracy")
    p.add_argument("--summary", action="store_true",
                   help="also write time_to_accuracy into benchmarks/results/recipe/summary.json")
    p.add_argument("--summary_as", default=None,
                   help="with --summary and --arms ours: write our arm under time_to_accuracy.<this name> instead "
                        "(another recipe's curve beside the headline comparison, which it leaves as it is)")
    args = p.parse_args()
    out = Path(args.out)
    arms = [a for a in args.arms.split(",") if a]
    if "official" in arms and not args.reference:
        raise SystemExit("--reference: the official arm needs a facebookresearch/ijepa checkout")
    for arm in arms:
        folder = out / "snapshots" / arm
        if (folder / "done").exists():
            continue  # trained in an earlier sitting
        if arm not in ("ours", "official"):
            raise SystemExit(f"--arms: unknown arm {arm!r} (ours, official)")
        resumable = arm == "official" and (folder / "state.pt").exists()
        if folder.exists() and any(folder.iterdir()) and not resumable:
            raise SystemExit(f"{folder} holds an unfinished arm (its times would not be comparable): delete it")
        folder.mkdir(parents=True, exist_ok=True)
        if arm == "ours":
            train_ours(args.config, folder, args.every_ours, args.seed, args.limit_train)
        elif not train_official(args.reference, folder, args.official_epochs, args.every_official, args.seed,
                                args.limit_train, config=args.config):
            return  # stopped with its state saved
        (folder / "done").write_text("")
    cache = out / "probes.json"
    probes = json.loads(cache.read_text()) if cache.exists() else {}
    for arm in arms:
        for path in sorted((out / "snapshots" / arm).glob("step*.pt")):
            points = probes.setdefault(arm, [])
            if any(q["file"] == path.name for q in points):
                continue
            snapshot = torch.load(path, map_location="cpu", weights_only=True)
            points.append({"file": path.name, "step": snapshot["step"], "seconds": snapshot["seconds"],
                           "avg": round(probe_snapshot(snapshot, path, args.probe_limit), 4)})
            write_json(cache, probes)  # each probe kept at once: a cut-short sitting loses at most one
            print(f"{arm} {path.name}: {points[-1]}", flush=True)
    result = {**summarise(probes), "command": "python " + " ".join(sys.argv), "hardware": cpu_model(),
              "date": time.strftime("%Y-%m-%d")}
    write_json(out / "time_to_accuracy.json", result)
    if args.summary:
        summary_path = RESULTS / "summary.json"
        summary = json.loads(summary_path.read_text())
        if args.summary_as:
            ours = result["arms"].get("ours")
            if ours is None or len(result["arms"]) != 1:
                raise SystemExit("--summary_as: give --arms ours alone (one recipe's curve)")
            summary["time_to_accuracy"][args.summary_as] = {
                "config": args.config, "ours_s_to_80": ours["s_to_80"], "ours_s_to_85": ours["s_to_85"],
                "points": [{k: p[k] for k in ("step", "seconds", "avg")} for p in ours["points"]],
                **{k: result[k] for k in ("command", "hardware", "date")}}
        else:  # the headline replaced, the other recipes' curves (--summary_as) kept
            others = {k: v for k, v in summary.get("time_to_accuracy", {}).items() if isinstance(v, dict)}
            summary["time_to_accuracy"] = {**{k: result[k] for k in ("ours_s_to_85", "official_s_to_85", "ratio",
                                                                      "official_trained_s", "ratio_at_least",
                                                                      "command", "hardware", "date") if k in result},
                                           **others}
        write_json(summary_path, summary)
        write_text(RESULTS / "summary.md", markdown(summary))
    bound = f" (at least {result['ratio_at_least']})" if "ratio_at_least" in result else ""
    print(f"wrote {out / 'time_to_accuracy.json'}: ours {result['ours_s_to_85']} s, official "
          f"{result['official_s_to_85']} s to 85 %, ratio {result['ratio']}{bound}")


if __name__ == "__main__":
    main()
