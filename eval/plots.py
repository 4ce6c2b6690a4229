"""Probe figures: a confusion matrix of the test predictions and a 2-D PCA of the embeddings coloured by class."""
from __future__ import annotations

from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts, rows = true class, columns = predicted class."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes).view(num_classes, num_classes)


def plot_confusion(pred: torch.Tensor, target: torch.Tensor, classes: list[str], out_png: str | Path,
                   title: str = "") -> Path:
    cm = confusion_matrix(pred, target, len(classes)).float()
    recall = cm / cm.sum(1, keepdim=True).clamp_min(1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(recall.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            value = recall[i, j].item()
            if value >= 0.005:
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (% of each true class)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, plt, out_png)


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    x = x.float() - x.float().mean(0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False, niter=4)
    return x @ v[:, :2]


def plot_pca(features: torch.Tensor, labels: torch.Tensor, classes: list[str], out_png: str | Path,
             title: str = "", max_points: int = 5000) -> Path:
    keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:max_points]
    xy, y = pca_2d(features[keep]), labels[keep]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(classes):
        sel = y == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=3, alpha=0.6, color=cmap(c % 10), label=name)
    ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "2-D PCA of the embeddings", fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, out_png)


def _save(fig, plt, out_png) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
