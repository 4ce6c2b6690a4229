"""Probes on frozen clip tokens, for every label of a clip dataset: V-JEPA's attentive probe on all tokens, and two
low-capacity ones a random encoder rarely passes, a linear probe and kNN on the time-pooled tokens.

Time pooling applies an image probe protocol (eval.features.PROTOCOLS) within each time slot and concatenates the
slots in order: `avg` (the default) averages each slot over space, so position survives only where the features
carry it; `avg+2x2` adds a 2x2 grid of averages per slot, a low-capacity probe that keeps coarse position.

A video encoder embeds each clip into T/tubelet x N tokens whose 3-D position embedding already tells time apart.
An image encoder embeds each frame (T x N tokens); a fixed 1-D sin-cos embedding of the frame index is added to
each frame's tokens, so the probe can see frame order (V-JEPA's frame-wise image-encoder baseline): without it,
a clip and the same clip played backwards give the same multiset of tokens. Every row then goes through the same
probes; settings are chosen on a held-out part of the probe's training clips, the test clips are scored
once.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from eval.attentive_probe import AttentiveProbeConfig, attentive_probe
from eval.feature_cache import FeatureCache
from eval.features import PROTOCOLS, check_protocols, pool
from eval.knn import knn_accuracy
from eval.linear_probe import LinearProbeConfig, linear_probe
from jepa.errors import ConfigError
from jepa.pos_embed import sincos_1d


@dataclass
class ClipProbeData:
    """uint8 clips [N, T, C, H, W] with one or more label sets, and the encoders' input normalisation; `extras`
    holds per-clip values that are not probed ({split: {key: values}}, e.g. the motion clips' garment paths)."""

    name: str
    train_x: torch.Tensor
    train_labels: dict[str, torch.Tensor]
    test_x: torch.Tensor
    test_labels: dict[str, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: dict
    extras: dict = field(default_factory=dict)


def labelled_splits(root: str | None, train_limit: int, test_limit: int, make, labels: tuple[str, ...]):
    """Probe-training clips of training-split garments (default 5,000) and test clips of test-split garments
    (default 2,000). make(images, classes, n, seed_offset) builds a clip dataset with a `clip(i) -> (frames [T, H, W],
    info)` method. Returns {split: (uint8 [n, T, 1, H, W], {label: values read from info})} and the test dataset."""
    from data.fashion_mnist import find_root, load_split
    from data.moving_fmnist import labelled_clips

    base = find_root(root)
    parts = {}
    for split, n, offset in (("train", train_limit or 5000, 1000), ("test", test_limit or 2000, 0)):
        images, classes = load_split(base, split)
        data = make(images, classes, n, offset)
        parts[split] = labelled_clips(data, labels)
    return parts, data


def moving_fmnist_clips(root: str | None = None, train_limit: int = 0, test_limit: int = 0, num_frames: int = 8,
                        size: int = 64, seed: int = 0, garment: int | None = None) -> ClipProbeData:
    """Labelled moving-Fashion-MNIST clips (one garment of `garment` px, default Fashion-MNIST's 28, 8 directions)."""
    from data.fashion_mnist import MEAN, STD
    from data.moving_fmnist import MovingFashionMNIST

    parts, data = labelled_splits(root, train_limit, test_limit, lambda images, classes, n, offset: MovingFashionMNIST(
        images, classes, "eval", n, num_frames, size, seed=seed + offset, garment=garment), ("label", "direction"))
    parts = {split: (clips, {"class": v["label"], "direction": v["direction"]}) for split, (clips, v) in parts.items()}
    source = {"dataset": "moving_fmnist", "num_frames": num_frames, "size": size, "seed": seed,
              "garment": data.garment}
    return ClipProbeData("moving_fmnist", parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1],
                         MEAN, STD, source)


def motion_clips(root: str | None = None, train_limit: int = 0, test_limit: int = 0, num_frames: int = 8,
                 size: int = 64, seed: int = 0, garment: int | None = None,
                 extra: tuple[str, ...] = ()) -> ClipProbeData:
    """Motion clips (data.motion_clips: class, motion, bounce and future labels on a cluttered background);
    `no_change_future` in the source is how often the last frame's cell already is the future one. `extra` names
    more of each clip's info to keep in `extras` (e.g. "path", the garment's top-left corner per frame)."""
    from data.fashion_mnist import MEAN, STD
    from data.motion_clips import LABELS, MotionClips
    from data.moving_fmnist import GARMENT

    parts, data = labelled_splits(root, train_limit, test_limit, lambda images, classes, n, offset: MotionClips(
        images, classes, "eval", n, num_frames, size, seed=seed + offset, garment=garment or GARMENT),
        (*LABELS, "last_cell", *extra))
    extras = {split: {key: labels.pop(key) for key in ("last_cell", *extra)} for split, (_, labels) in parts.items()}
    no_change = float((extras["test"].pop("last_cell") == parts["test"][1]["future"]).float().mean())
    extras["train"].pop("last_cell")
    source = {"dataset": "motion_fmnist", "num_frames": num_frames, "size": size, "seed": seed,
              "garment": data.garment, "clutter": data.clutter, "future_frames": data.future,
              "no_change_future": no_change}
    return ClipProbeData("motion_fmnist", parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1],
                         MEAN, STD, source, extras)


CLIP_DATASETS = {"moving_fmnist": moving_fmnist_clips, "motion_fmnist": motion_clips}


def clip_dataset(name: str):
    """The builder of a clip dataset: one of CLIP_DATASETS, or the dotted path of a function with their signature
    defined in another package (jepa_control.clip_labels.trajectory_clips: the control environments' episodes),
    imported by name at run time as a config's class_path is, so eval imports no package above it; None when
    `name` is neither."""
    if name in CLIP_DATASETS:
        return CLIP_DATASETS[name]
    module, _, function = name.rpartition(".")
    if not module:
        return None
    try:
        found = getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None
    return found if callable(found) else None


def check_clip_compatible(encoder: nn.Module, data: ClipProbeData, source: str,
                          pretrain_garment: int | None = None) -> None:
    """Frames, channels and clip length must match the encoder; a reference pretrained on clips with other garments
    than the probe's (its checkpoint records them; exports record none) would make an unfair row, so it fails too."""
    t, c, h, w = data.train_x.shape[1:]
    if (c, h, w) != (encoder.in_chans, encoder.img_size, encoder.img_size):
        raise ConfigError(f"{source}: the encoder expects {encoder.in_chans}-channel {encoder.img_size}x"
                          f"{encoder.img_size} frames but {data.name} has {c}-channel {h}x{w} frames")
    if encoder.is_video and t != encoder.num_frames:
        raise ConfigError(f"{source}: the video encoder takes {encoder.num_frames} frames, {data.name} has {t}")
    garment = data.source.get("garment")
    if pretrain_garment is not None and garment is not None and pretrain_garment != garment:
        raise ConfigError(f"{source}: pretrained on {pretrain_garment}-pixel garments (its data.garment) but the probe "
                          f"clips have {garment}-pixel garments; probe it with --garment {pretrain_garment}, or export "
                          f"it (`jepa export`) to compare it on these clips anyway")


@torch.no_grad()
def clip_tokens(encoder: nn.Module, clips: torch.Tensor, mean, std, batch_size: int = 32,
                frame_positions: bool = True, desc: str = "clip features", progress: bool = True) -> torch.Tensor:
    """uint8 clips [N, T, C, H, W] -> tokens [N, T' * N_space, D] through the `encode` interface; an image
    encoder's tokens get the sin-cos embedding of their frame index added (frame_positions)."""
    encoder = encoder.eval()
    device = next(encoder.parameters()).device
    mean_t = torch.tensor(mean, device=device).view(1, 1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 1, -1, 1, 1)
    out = []
    for start in tqdm(range(0, len(clips), batch_size), desc=desc, unit="batch", leave=False, disable=not progress):
        x = clips[start : start + batch_size].to(device).float().div_(255).sub_(mean_t).div_(std_t)
        tokens = encoder.encode(x).float()  # [B, T', N, D]
        if frame_positions and not encoder.is_video:
            t, d = tokens.shape[1], tokens.shape[-1]
            tokens = tokens + sincos_1d(d, torch.arange(t)).float().to(tokens.device)[None, :, None, :]
        out.append(tokens.flatten(1, 2).cpu())
    return torch.cat(out)


def time_pooled(tokens: torch.Tensor, time_slots: int, protocol: str = "avg") -> torch.Tensor:
    """Clip tokens [N, T' * N_space, D] -> [N, T' * F]: each time slot's tokens pooled by an image probe protocol
    (`avg`: averaged over space), the slots concatenated in order, so a linear probe or kNN on it can compare frames
    but cannot attend to patches."""
    n, _, d = tokens.shape
    return pool(tokens.reshape(n * time_slots, -1, d), protocol).view(n, -1)


def probe_name(probe: str, protocol: str) -> str:
    """Results key of a probe on time-pooled tokens: `linear` / `knn` for `avg`, `linear/avg+2x2` for another."""
    return probe if protocol == "avg" else f"{probe}/{protocol}"


def time_pooled_features(encoder: nn.Module, clips: torch.Tensor, mean, std, progress: bool = True) -> torch.Tensor:
    """uint8 clips [N, T, C, H, W] -> the time-pooled features [N, T' * D] the linear probe and kNN see."""
    return time_pooled(clip_tokens(encoder, clips, mean, std, progress=progress), time_slots(encoder, clips.shape[1]))


def time_slots(encoder: nn.Module, num_frames: int) -> int:
    """Time slots of an encoder's clip tokens: tubelets for a video encoder, frames for an image encoder."""
    return num_frames // encoder.tubelet_size if encoder.is_video else num_frames


def probe_clip_rows(rows, data: ClipProbeData, attentive: AttentiveProbeConfig | None,
                    linear: LinearProbeConfig | None = None, knn=None, cache: FeatureCache | None = None,
                    seed: int = 0, log=print, protocols: tuple[str, ...] = ("avg",)) -> dict[str, dict]:
    """rows: eval.probe.Row list (encoder None is not allowed here). Per row and label, the probes that are on:
    `linear` on the tokens time-pooled by each of `protocols`, `knn` (an eval.probe.KnnConfig) by those of them in
    its `protocols`, `attentive` on all clip tokens. Returns row -> {label: {probe_name(...): result dict},
    "seconds": ..., "tokens": ...}."""
    check_protocols(protocols)
    cache = cache or FeatureCache(None)
    results = {}
    for row in rows:
        if row.encoder is None:
            raise ConfigError("clip probes need an encoder in every row")
        t0 = time.time()
        tokens = {}
        for split, clips in (("train", data.train_x), ("test", data.test_x)):
            spec = {**row.identity, "data": data.source, "split": split, "n": len(clips), "mean": data.mean,
                    "std": data.std, "pooling": "clip_tokens+frame_sincos"}
            tokens[split] = cache.get_or_compute(spec, lambda c=clips, s=split: clip_tokens(
                row.encoder, c, data.mean, data.std, desc=f"{row.name}: {s} clips"))
        slots = time_slots(row.encoder, data.train_x.shape[1])
        pooled = {protocol: {split: time_pooled(t, slots, protocol) for split, t in tokens.items()}
                  for protocol in protocols}
        out: dict = {"seconds": {"features": round(time.time() - t0, 1)}, "tokens": list(tokens["train"].shape[1:])}
        for label in data.train_labels:
            t1, out[label] = time.time(), {}
            train_y, test_y = data.train_labels[label], data.test_labels[label]
            for protocol, x in pooled.items():
                if linear is not None:
                    res = linear_probe(x["train"], train_y, x["test"], test_y, linear, seed=seed)
                    out[label][probe_name("linear", protocol)] = res.as_dict()
                if knn is not None and knn.enabled and protocol in knn.protocols:
                    out[label][probe_name("knn", protocol)] = {"test_acc": knn_accuracy(
                        x["train"], train_y, x["test"], test_y, knn.k, knn.temperature), "k": knn.k}
            if attentive is not None and getattr(attentive, "enabled", True):
                res = attentive_probe(tokens["train"], train_y, tokens["test"], test_y, attentive, seed=seed)
                out[label]["attentive"] = res.as_dict()
            out["seconds"][label] = round(time.time() - t1, 1)
            log(f"  {row.name:<16} {label:<10} " + "  ".join(
                f"{probe} {100 * r['test_acc']:5.1f} %" for probe, r in out[label].items()))
        results[row.name] = out
    return results


def clip_table(results: dict[str, dict], labels) -> str:
    first = next(iter(results.values()))
    probes = list(first[labels[0]])
    columns = [(label, probe) for label in labels for probe in probes]
    lines = ["| encoder | " + " | ".join(f"{label}, {probe}" for label, probe in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[label][probe]['test_acc']:.1f} %"
                                              for label, probe in columns) + " |")
    lines += ["", "- linear, knn: on the clip's tokens averaged over space within each time slot (tubelet or frame), "
              "the slots concatenated in order"]
    lines += [f"- linear/{protocol}, knn/{protocol}: the same with each slot pooled by {protocol} "
              f"({PROTOCOLS[protocol]})"
              for protocol in PROTOCOLS if protocol != "avg" and any(p.endswith("/" + protocol) for p in probes)]
    lines += ["- attentive: one learned query, one cross-attention block, linear "
              "head, on all clip tokens (an image encoder's frame-wise tokens carry a sin-cos embedding of their "
              "frame index)"]
    return "\n".join(lines)
