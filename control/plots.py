"""PNG plots of planning runs: a few episodes (first frame, path, goal) and latent rollout error against horizon."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jepa.io import atomic_write


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_episodes(shown: list[dict], path: str | Path, title: str) -> Path:
    """Each episode: its first frame with the path drawn over it (start o, goal *), then its last frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(shown))
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False)
    for i, ep in enumerate(shown):
        size = ep["frames"].shape[1]
        top, bottom = axes[0, i], axes[1, i]
        top.imshow(ep["frames"][0], extent=(0, 1, 1, 0))
        p = np.asarray(ep["path"])
        top.plot(p[:, 0], p[:, 1], "-", color="yellow", lw=1.2)
        top.plot(p[0, 0], p[0, 1], "o", color="cyan", ms=5)
        top.plot(ep["goal"][0], ep["goal"][1], "*", color="lime", ms=10)
        top.set_title(("success" if ep["success"] else "failure") + f" ({len(p) - 1} steps)", fontsize=9)
        bottom.imshow(ep["frames"][-1], extent=(0, 1, 1, 0))
        bottom.plot(ep["goal"][0], ep["goal"][1], "*", color="lime", ms=10)
        bottom.set_title(f"final frame ({size}x{size})", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([]), ax.set_yticks([])
    for j in range(len(shown), n):
        axes[0, j].axis("off"), axes[1, j].axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def plot_rollout_error(errors: dict[str, list[float]], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, values in errors.items():
        ax.plot(range(1, len(values) + 1), values, "o-", label=name.replace("_", " "))
    ax.legend(fontsize=8)
    ax.set_xlabel("steps imagined (own predictions fed back)")
    ax.set_ylabel("latent L1 error")
    ax.set_title("world model: rollout error against horizon", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))
