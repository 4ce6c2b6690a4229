"""Probe frozen encoders (and raw pixels) under identical protocols: linear, kNN and attentive probes.

Features are extracted once per encoder and split, cached on disk (eval/feature_cache.py), and every probe of a row
reads the same tokens. Model selection uses a held-out part of the training set only; the test set is scored once.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from eval.attentive_probe import AttentiveProbeConfig, attentive_probe
from eval.feature_cache import FeatureCache
from eval.features import PROTOCOLS, check_protocols, encode_tokens, pixel_tokens, pool
from eval.knn import knn_accuracy
from eval.linear_probe import LinearProbeConfig, linear_probe
from jepa.errors import ConfigError
from jepa.export import exported_weights
from jepa.io import sha256_of


@dataclass
class KnnConfig:
    """kNN on pooled features: k neighbours by cosine similarity, votes weighted exp(similarity / temperature)."""

    enabled: bool = True
    k: int = 20
    temperature: float = 0.07
    protocols: tuple[str, ...] = ("avg",)


@dataclass
class AttentiveConfig(AttentiveProbeConfig):
    enabled: bool = True


@dataclass
class ProbeData:
    """uint8 images [N, C, H, W] with labels, the normalisation the encoders were trained with, class names."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    source: dict = field(default_factory=dict)  # what identifies the data in feature-cache keys


def fashion_mnist(root: str | None = None, train_limit: int = 0, test_limit: int = 0, holdout: int = 0) -> ProbeData:
    """Fashion-MNIST's train / test splits; with `holdout` N > 0, the training split cut in two instead (fit on all
    but its last N images, score on those; the test split is not read), for choosing settings."""
    from data.fashion_mnist import CLASSES, MEAN, STD, find_root, load_split

    base = find_root(root)
    train_x, train_y = load_split(base, "train")
    files = sorted(f"{p.name}:{p.stat().st_size}" for p in Path(base).glob("*.gz"))
    if holdout:
        if not 0 < holdout < len(train_y):
            raise ConfigError(f"holdout must lie in 1..{len(train_y) - 1}, got {holdout}")
        cut = len(train_y) - holdout
        train_x, train_y, test_x, test_y = train_x[:cut], train_y[:cut], train_x[cut:], train_y[cut:]
        name, source = "fashion_mnist_heldout", {"split": f"train[:{cut}] / train[{cut}:]"}
    else:
        test_x, test_y = load_split(base, "test")
        name, source = "fashion_mnist", {}
    if train_limit:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    if test_limit:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    return ProbeData(name, train_x, train_y, test_x, test_y, MEAN, STD, list(CLASSES),
                     {"dataset": "fashion_mnist", "files": files, **source})


DATASETS = {"fashion_mnist": fashion_mnist}


@dataclass
class Row:
    """One row of the table: an encoder (None: raw pixels cut into patches) and what identifies its weights."""

    name: str
    encoder: nn.Module | None
    identity: dict
    patch_size: int


def checkpoint_row(name: str, path: str | os.PathLike, encoder: nn.Module, which: str) -> Row:
    weights = exported_weights(path) if Path(path).is_dir() else Path(path)  # a `jepa export` folder
    return Row(name, frozen_copy(encoder), {"checkpoint_sha256": sha256_of(weights), "which": which},
               encoder.patch_size)


def random_init_row(hparams: dict, seed: int) -> Row:
    """The same architecture as a checkpoint's encoder (its hyperparameters) at random init, drawn under `seed`: the
    baseline row beside every trained one."""
    from jepa.vit import VisionTransformer, encoder_args

    torch.manual_seed(seed)
    arch = encoder_args(hparams)
    return Row("random init", frozen_copy(VisionTransformer(**arch)), {"random_init": arch, "seed": seed},
               hparams["patch_size"])


def check_compatible(encoder: nn.Module, data: ProbeData, source: str) -> None:
    """An encoder built for other images than the probe data fails here, naming both, before any compute."""
    c, h, w = data.train_x.shape[1:]
    want = (encoder.in_chans, encoder.img_size, encoder.img_size)
    if (c, h, w) != want:
        raise ConfigError(
            f"{source}: the encoder expects {want[0]}-channel {want[1]}x{want[2]} images "
            f"(in_chans={encoder.in_chans}, img_size={encoder.img_size}) but {data.name} has {c}-channel {h}x{w} "
            "images: probe it on data of the size and channels it was trained on"
        )


def frozen_copy(encoder: nn.Module) -> nn.Module:
    """A CPU fp32 copy that cannot train: what every probe row encodes with."""
    return copy.deepcopy(encoder).float().cpu().eval().requires_grad_(False)


class _Features:
    """Tokens and pooled features of one row and split, each computed at most once and cached on disk."""

    def __init__(self, row: Row, data: ProbeData, split: str, layers: int, cache: FeatureCache, batch_size: int):
        self.row, self.data, self.split, self.layers, self.cache = row, data, split, layers, cache
        self.batch_size = batch_size
        self._tokens: torch.Tensor | None = None
        self.images = data.train_x if split == "train" else data.test_x

    def tokens(self) -> torch.Tensor:
        if self._tokens is None:
            if self.row.encoder is None:
                self._tokens = pixel_tokens(self.images, self.row.patch_size)
            else:
                self._tokens = encode_tokens(self.row.encoder, self.images, self.data.mean, self.data.std,
                                             self.batch_size, self.layers, desc=f"{self.row.name}: {self.split} features")
        return self._tokens

    def get(self, pooling: str) -> torch.Tensor:
        if self.row.encoder is None:  # pixels: cheaper to recompute than to cache
            return self.tokens() if pooling == "tokens" else pool(self.tokens(), pooling)
        spec = {**self.row.identity, "data": self.data.source, "split": self.split, "n": len(self.images),
                "mean": self.data.mean, "std": self.data.std, "layers": self.layers, "pooling": pooling}
        return self.cache.get_or_compute(spec, lambda: self.tokens() if pooling == "tokens" else pool(self.tokens(), pooling))

    def drop_tokens(self) -> None:
        """Free the tokens after their last use: the last 4 layers of 60k images are 6 GB, room the probe needs."""
        self._tokens = None


def probe_rows(rows: list[Row], data: ProbeData, protocols=("avg", "flat"), layers: int = 1,
               linear: LinearProbeConfig | None = None, knn: KnnConfig | None = None,
               attentive: AttentiveConfig | None = None, cache: FeatureCache | None = None,
               batch_size: int = 256, seed: int = 0, log=print) -> dict[str, dict]:
    """Every probe on every row. Returns row name -> {"linear": {protocol: result}, "knn": {protocol: acc},
    "attentive": result, "seconds": {...}} plus, under "_predictions", test predictions for the plots."""
    check_protocols(protocols)
    linear, knn = linear or LinearProbeConfig(), knn or KnnConfig()
    attentive = attentive or AttentiveConfig(enabled=False)
    cache = cache or FeatureCache(None)
    log(f"probing on {len(data.train_y)} train / {len(data.test_y)} test images of {data.name}; "
        f"protocols: {', '.join(protocols)}; last {layers} layer(s)")
    results: dict[str, dict] = {}
    for row in rows:
        t0 = time.time()
        tr = _Features(row, data, "train", layers, cache, batch_size)
        te = _Features(row, data, "test", layers, cache, batch_size)
        out: dict = {"linear": {}, "knn": {}, "seconds": {}, "_predictions": {}}
        for protocol in protocols:
            t1 = time.time()
            x_tr, x_te = tr.get(protocol), te.get(protocol)
            if protocol == protocols[-1] and not attentive.enabled:
                tr.drop_tokens()
                te.drop_tokens()
            if protocol == protocols[0] and row.encoder is not None:
                out["_embeddings"] = x_te  # for the PCA plot, without reading the features again
            res = linear_probe(x_tr, data.train_y, x_te, data.test_y, linear, seed=seed)
            out["linear"][protocol] = res.as_dict()
            out["_predictions"][f"linear/{protocol}"] = res.test_pred
            lr = "" if res.lr is None else f"lr {res.lr:g}, "
            msg = (f"  {row.name:<14} {protocol:<8} linear {100 * res.test_acc:5.1f} % "
                   f"({res.solver}, {lr}wd {res.weight_decay:g})")
            if knn.enabled and protocol in knn.protocols:
                out["knn"][protocol] = knn_accuracy(x_tr, data.train_y, x_te, data.test_y, knn.k, knn.temperature)
                msg += f"  kNN {100 * out['knn'][protocol]:5.1f} %"
            out["seconds"][protocol] = round(time.time() - t1, 1)
            log(f"{msg}  [{out['seconds'][protocol]} s]")
        if attentive.enabled:
            t1 = time.time()
            res = attentive_probe(tr.get("tokens"), data.train_y, te.get("tokens"), data.test_y, attentive, seed=seed)
            out["attentive"] = res.as_dict()
            out["_predictions"]["attentive"] = res.test_pred
            out["seconds"]["attentive"] = round(time.time() - t1, 1)
            log(f"  {row.name:<14} attentive {100 * res.test_acc:5.1f} % (lr {res.lr:g})  [{out['seconds']['attentive']} s]")
        out["seconds"]["total"] = round(time.time() - t0, 1)
        results[row.name] = out
    return results


def public(results: dict[str, dict]) -> dict[str, dict]:
    """The JSON-able part of probe_rows' results (no tensors)."""
    return {name: {k: v for k, v in row.items() if not k.startswith("_")} for name, row in results.items()}


def markdown_table(results: dict[str, dict], protocols, knn: KnnConfig | None = None, layers: int = 1) -> str:
    knn = knn or KnnConfig()
    knn_protocols = [p for p in protocols if knn.enabled and p in knn.protocols]
    has_attentive = any("attentive" in r for r in results.values())
    head = ([f"linear, {p}" for p in protocols] + [f"kNN (k={knn.k}), {p}" for p in knn_protocols]
            + (["attentive"] if has_attentive else []))
    lines = ["| encoder | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for name, row in results.items():
        cells = [f"{100 * row['linear'][p]['test_acc']:.1f} %" for p in protocols]
        cells += [f"{100 * row['knn'][p]:.1f} %" for p in knn_protocols]
        if has_attentive:
            cells.append(f"{100 * row['attentive']['test_acc']:.1f} %" if "attentive" in row else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    which = "the last layer" if layers == 1 else f"the last {layers} layers, concatenated"
    lines += [f"- {p}: {PROTOCOLS[p]} of {which}" for p in protocols]
    solvers = sorted({r["linear"][p]["solver"] for r in results.values() for p in protocols})
    lines.append(f"- linear ({' / '.join(solvers)}): logistic regression on standardised features; weight decay (and "
                 "the minibatch solver's lr) chosen on 10 % of the training set, retrained on all of it; test scored "
                 "once")
    if knn_protocols:
        lines.append(f"- kNN: k={knn.k}, cosine similarity, votes weighted exp(sim / {knn.temperature:g})")
    if has_attentive:
        lines.append("- attentive: one learned query, one cross-attention block, linear head, on the patch tokens")
    return "\n".join(lines)


def settings(**configs) -> dict:
    return {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in configs.items()}
