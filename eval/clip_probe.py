"""Attentive probes on frozen clip tokens (V-JEPA's evaluation), for every label of a clip dataset.

A video encoder embeds each clip into T/tubelet x N tokens whose 3-D position embedding already tells time apart.
An image encoder embeds each frame (T x N tokens); a fixed 1-D sin-cos embedding of the frame index is added to
each frame's tokens, so the probe can see frame order (V-JEPA's frame-wise image-encoder baseline): without it,
a clip and the same clip played backwards give the same multiset of tokens. Every row then goes through the same
attentive probe; settings are chosen on a held-out part of the probe's training clips, the test clips are scored
once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from eval.attentive_probe import AttentiveProbeConfig, attentive_probe
from eval.feature_cache import FeatureCache
from jepa.errors import ConfigError
from jepa.pos_embed import sincos_1d


@dataclass
class ClipProbeData:
    """uint8 clips [N, T, C, H, W] with one or more label sets, and the encoders' input normalisation."""

    name: str
    train_x: torch.Tensor
    train_labels: dict[str, torch.Tensor]
    test_x: torch.Tensor
    test_labels: dict[str, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: dict


def moving_fmnist_clips(root: str | None = None, train_limit: int = 0, test_limit: int = 0, num_frames: int = 8,
                        size: int = 64, seed: int = 0, garment: int | None = None) -> ClipProbeData:
    """Labelled moving-Fashion-MNIST clips (one garment of `garment` px, default Fashion-MNIST's 28, 8 directions):
    the probe trains on clips of training-split garments and is tested on clips of test-split garments (default 5,000
    and 2,000)."""
    from data.fashion_mnist import MEAN, STD, find_root, load_split
    from data.moving_fmnist import MovingFashionMNIST

    base = find_root(root)
    parts = {}
    for split, n, offset in (("train", train_limit or 5000, 1000), ("test", test_limit or 2000, 0)):
        images, labels = load_split(base, split)
        data = MovingFashionMNIST(images, labels, "eval", n, num_frames, size, seed=seed + offset, garment=garment)
        clips, classes, directions = [], [], []
        for i in range(n):
            frames, info = data.clip(i)
            clips.append(torch.from_numpy(frames).unsqueeze(1))
            classes.append(info["label"])
            directions.append(info["direction"])
        parts[split] = (torch.stack(clips), {"class": torch.tensor(classes), "direction": torch.tensor(directions)})
    source = {"dataset": "moving_fmnist", "num_frames": num_frames, "size": size, "seed": seed,
              "garment": data.garment}
    return ClipProbeData("moving_fmnist", parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1],
                         MEAN, STD, source)


CLIP_DATASETS = {"moving_fmnist": moving_fmnist_clips}


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
                frame_positions: bool = True, desc: str = "clip features") -> torch.Tensor:
    """uint8 clips [N, T, C, H, W] -> tokens [N, T' * N_space, D] through the `encode` interface; an image
    encoder's tokens get the sin-cos embedding of their frame index added (frame_positions)."""
    encoder = encoder.eval()
    device = next(encoder.parameters()).device
    mean_t = torch.tensor(mean, device=device).view(1, 1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 1, -1, 1, 1)
    out = []
    for start in tqdm(range(0, len(clips), batch_size), desc=desc, unit="batch", leave=False):
        x = clips[start : start + batch_size].to(device).float().div_(255).sub_(mean_t).div_(std_t)
        tokens = encoder.encode(x).float()  # [B, T', N, D]
        if frame_positions and not encoder.is_video:
            t, d = tokens.shape[1], tokens.shape[-1]
            tokens = tokens + sincos_1d(d, torch.arange(t)).float().to(tokens.device)[None, :, None, :]
        out.append(tokens.flatten(1, 2).cpu())
    return torch.cat(out)


def probe_clip_rows(rows, data: ClipProbeData, attentive: AttentiveProbeConfig, cache: FeatureCache | None = None,
                    seed: int = 0, log=print) -> dict[str, dict]:
    """rows: eval.probe.Row list (encoder None is not allowed here). Returns row -> {label: result dict, seconds}."""
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
        out: dict = {"seconds": {"features": round(time.time() - t0, 1)}, "tokens": list(tokens["train"].shape[1:])}
        for label in data.train_labels:
            t1 = time.time()
            res = attentive_probe(tokens["train"], data.train_labels[label], tokens["test"], data.test_labels[label],
                                  attentive, seed=seed)
            out[label] = res.as_dict()
            out["seconds"][label] = round(time.time() - t1, 1)
            log(f"  {row.name:<16} {label:<10} attentive {100 * res.test_acc:5.1f} % (lr {res.lr:g})")
        results[row.name] = out
    return results


def clip_table(results: dict[str, dict], labels) -> str:
    lines = ["| encoder | " + " | ".join(f"attentive, {lb}" for lb in labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[lb]['test_acc']:.1f} %" for lb in labels) + " |")
    lines += ["", "- attentive: one learned query, one cross-attention block, linear head, on all clip tokens (an image "
              "encoder's frame-wise tokens carry a sin-cos embedding of their frame index)"]
    return "\n".join(lines)
