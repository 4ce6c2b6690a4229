"""How spread out an encoder's average-pooled features are, beside random init of the same architecture: RankMe of
the centred features and the mean per-dimension std of the normalised ones (jepa/metrics.py), on the same images.
Average-pooled features of a random ViT already use few directions (RankMe ~7 of 128 on Fashion-MNIST), so the
reading that matters is the comparison: a trained encoder below its random init has narrowed its features (towards
collapse), and the probe then has less to read than at the start."""
from __future__ import annotations

import torch
from torch import nn

from eval.features import encode_tokens
from jepa.metrics import feature_std, rankme


def spread(encoders: dict[str, nn.Module], images: torch.Tensor, mean, std) -> dict[str, dict]:
    """{name: {"rankme", "feature_std", "width"}} of each encoder's average-pooled features of `images`."""
    out = {}
    for name, encoder in encoders.items():
        pooled = encode_tokens(encoder, images, mean, std, desc=f"{name} features").mean(dim=1)
        out[name] = {"rankme": round(rankme(pooled, center=True), 2), "feature_std": round(feature_std(pooled), 4),
                     "width": pooled.shape[1]}
    return out


def narrower_than(result: dict[str, dict], reference: str) -> list[str]:
    """The encoders whose RankMe is below `reference`'s."""
    return [name for name, r in result.items() if name != reference and r["rankme"] < result[reference]["rankme"]]


def summary(result: dict[str, dict], reference: str = "random init") -> str:
    """One line per encoder, and a warning for each whose features are narrower than the reference's."""
    lines = [f"feature spread ({name}): RankMe {r['rankme']:.1f} of {r['width']} dims, std {r['feature_std']:.4f}"
             for name, r in result.items()]
    lines += [f"warning: {name}'s features use fewer directions than {reference}'s (RankMe {result[name]['rankme']:.1f}"
              f" < {result[reference]['rankme']:.1f}): it is drifting towards collapse; a longer run, SIGReg "
              "(model.sigreg_weight) or another recipe may help (docs/training.md)"
              for name in narrower_than(result, reference)]
    return "\n".join(lines)
