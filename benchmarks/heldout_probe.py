"""The quickstart's converged probes on a held-out part of the Fashion-MNIST *training* split, for choosing a recipe.

The minibatch monitor (eval.monitors.OnlineProbe) reads a near-collapsed encoder far worse than the converged probe
does, so it overstates what a recipe gains under the quickstart's table. This scores a checkpoint's target encoder
with that table's probes (average-pooled linear, standardised features, weight decay chosen on held-out images of
the fit set; kNN), fitted on the first 60,000 - N training images and scored on the last N: the test split is never
read, so the figures can choose a recipe.
Example: python benchmarks/heldout_probe.py runs/ablations/batch_64_sigreg_0.001/seed0/checkpoints/last.ckpt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eval.probe import (  # noqa: E402
    KnnConfig,
    ProbeData,
    checkpoint_row,
    fashion_mnist,
    probe_rows,
    random_init_row,
)
from jepa.checkpoint import load_encoder  # noqa: E402
from jepa.errors import ConfigError  # noqa: E402


def heldout_split(root: str | None, holdout: int) -> ProbeData:
    """Fashion-MNIST's training split cut in two: fit on all but the last `holdout` images, score on those."""
    try:
        return fashion_mnist(root, holdout=holdout)
    except ConfigError as e:
        raise SystemExit(f"--{e}") from None


def heldout_probe(ckpt: str | Path, holdout: int = 10000, root: str | None = None, seed: int = 0,
                  which: str = "target_encoder") -> dict:
    """{"heldout_avg", "heldout_knn"} (fractions) of the checkpoint's `which` encoder, and {"heldout_random_avg",
    "heldout_random_knn"} of the same architecture at random init (seeded by `seed`): a wider or deeper encoder
    probes higher before any training, so a variant that changes the architecture is read against its own."""
    encoder, hparams = load_encoder(ckpt, which)
    rows = [checkpoint_row("jepa", ckpt, encoder, which), random_init_row(hparams, seed)]
    result = probe_rows(rows, heldout_split(root, holdout), ("avg",), knn=KnnConfig(protocols=("avg",)),
                        log=lambda *_: None)
    return {f"heldout{tag}_{probe}": value for tag, name in (("", "jepa"), ("_random", "random init"))
            for probe, value in (("avg", result[name]["linear"]["avg"]["test_acc"]),
                                 ("knn", result[name]["knn"]["avg"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="a `jepa fit` checkpoint")
    p.add_argument("--holdout", type=int, default=10000, help="last N training images to score on")
    p.add_argument("--data_root", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--which", default="target_encoder", choices=["target_encoder", "encoder"],
                   help="the EMA target encoder (what jepa probe reads by default) or the context encoder")
    args = p.parse_args()
    print(json.dumps(heldout_probe(args.ckpt, args.holdout, args.data_root, which=args.which)))


if __name__ == "__main__":
    main()
