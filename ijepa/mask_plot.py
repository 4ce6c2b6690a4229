"""A picture of sampled multi-block masks over real images: context in blue, each target block its own colour."""
from __future__ import annotations

from pathlib import Path

import torch

from ijepa.masks import Masks


def plot_masks(images: torch.Tensor, masks: Masks, grid: int, path: str | Path) -> Path:
    """images [B, 1 or 3, H, W] in [0, 1]; masks for the same batch on a grid x grid patch layout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10").colors
    n = images.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).squeeze(-1).cpu().numpy()
        ctx = torch.zeros(grid * grid)
        ctx[masks.context[i].cpu()] = 1
        overlay = torch.ones(grid * grid, 4) * torch.tensor([1.0, 1.0, 1.0, 0.0])
        overlay[ctx.bool()] = torch.tensor([0.2, 0.4, 1.0, 0.45])
        axes[0, i].imshow(img, cmap="gray")
        axes[0, i].imshow(overlay.view(grid, grid, 4).numpy(), extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
        axes[1, i].imshow(img, cmap="gray")
        tgt = torch.zeros(grid * grid, 4)
        for t, idx in enumerate(masks.targets[:, i].cpu()):
            tgt[idx] = torch.tensor([*colours[t % 10], 0.45])
        axes[1, i].imshow(tgt.view(grid, grid, 4).numpy(), extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
        for ax in axes[:, i]:
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("context")
    axes[1, 0].set_ylabel("targets")
    fig.suptitle(f"sampled masks ({masks.context.shape[1]} context tokens, "
                 f"{masks.targets.shape[0]} x {masks.targets.shape[2]} target tokens)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
