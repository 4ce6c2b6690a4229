"""Probe a set of frozen encoders (and raw pixels) on Fashion-MNIST under identical linear-probe protocols."""
from __future__ import annotations

import copy
import time

from torch import nn

from data.fashion_mnist import MEAN, STD, load_split
from eval.features import PROTOCOLS, encode_tokens, pixel_tokens, pool
from eval.linear_probe import linear_probe


def probe_encoders(encoders: dict[str, nn.Module | None], patch_size: int, protocols=("avg", "flat"),
                   data_root: str | None = None, train_limit: int = 0, test_limit: int = 0,
                   log=print) -> dict[str, dict]:
    """encoders: row name -> frozen encoder, or None for the raw-pixel row (pixels cut into the same patches).

    Returns row -> {protocol: ProbeResult dict, "seconds": {...}}. Features are extracted once per row and
    every protocol pools the same tokens.
    """
    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"unknown probe protocol {p!r}: choose from {', '.join(PROTOCOLS)}")
    train_x, train_y = load_split(data_root, "train")
    test_x, test_y = load_split(data_root, "test")
    if train_limit:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    if test_limit:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    log(f"probing on {len(train_x)} train / {len(test_x)} test images, protocols: {', '.join(protocols)}")
    rows: dict[str, dict] = {}
    for name, encoder in encoders.items():
        t0 = time.time()
        if encoder is None:
            tr, te = pixel_tokens(train_x, patch_size), pixel_tokens(test_x, patch_size)
        else:
            tr = encode_tokens(encoder, train_x, MEAN, STD, desc=f"{name}: train features")
            te = encode_tokens(encoder, test_x, MEAN, STD, desc=f"{name}: test features")
        row: dict = {"seconds": {"features": round(time.time() - t0, 1)}}
        for protocol in protocols:
            t1 = time.time()
            result = linear_probe(pool(tr, protocol), train_y, pool(te, protocol), test_y)
            row[protocol] = result.as_dict()
            row["seconds"][protocol] = round(time.time() - t1, 1)
            log(f"  {name:<12} {protocol:<8} test acc {100 * result.test_acc:5.1f} %  "
                f"(wd {result.weight_decay:g}, {result.features} features, {row['seconds'][protocol]} s)")
        rows[name] = row
        del tr, te
    return rows


def markdown_table(rows: dict[str, dict], protocols) -> str:
    head = "| encoder | " + " | ".join(f"linear, {p}" for p in protocols) + " |"
    sep = "|---|" + "---:|" * len(protocols)
    lines = [head, sep]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[p]['test_acc']:.1f} %" for p in protocols) + " |")
    lines.append("")
    lines += [f"- {p}: {PROTOCOLS[p]}" for p in protocols]
    return "\n".join(lines)


def frozen_copy(encoder: nn.Module) -> nn.Module:
    """A CPU fp32 copy that cannot train: what every probe row encodes with."""
    return copy.deepcopy(encoder).float().cpu().eval().requires_grad_(False)
