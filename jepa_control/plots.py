"""PNG plots of planning runs: a few episodes (first frame, path, goal), latent rollout error against horizon,
success against predictor calls per planning step (the planners' Pareto front) and the cost landscape around a
goal (cost over a 2-D grid of actions)."""
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
    """Each episode: its first frame with the path drawn over it (start o, goal *), its last frame, and the goal
    image the agent was given (where the goal is more than a point: Push-T's block pose, Reacher's arm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(shown))
    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 8.1), squeeze=False)
    for i, ep in enumerate(shown):
        size = ep["frames"].shape[1]
        top, middle, bottom = axes[:, i]
        extent = ep["extent"]  # the frame in position units, so the path lies over it
        top.imshow(ep["frames"][0], extent=extent)
        p = np.asarray(ep["path"])
        top.plot(p[:, 0], p[:, 1], "-", color="yellow", lw=1.2)
        top.plot(p[0, 0], p[0, 1], "o", color="cyan", ms=5)
        top.set_title(("success" if ep["success"] else "failure") + f" ({len(p) - 1} steps)", fontsize=9)
        middle.imshow(ep["frames"][-1], extent=extent)
        middle.set_title(f"final frame ({size}x{size})", fontsize=9)
        bottom.imshow(ep["goal_obs"], extent=extent)
        bottom.set_title("goal image", fontsize=9)
        for ax in (top, middle, bottom):
            ax.plot(ep["goal"][0], ep["goal"][1], "*", color="lime", ms=10)
            ax.set_xticks([]), ax.set_yticks([])
    for j in range(len(shown), n):
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def plot_rollout_error(errors: dict[str, list[float]], path: str | Path, ylabel: str = "latent L1 error") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, values in errors.items():
        ax.plot(range(1, len(values) + 1), values, "o-", label=name.replace("_", " "))
    ax.legend(fontsize=8)
    ax.set_xlabel("steps imagined (own predictions fed back)")
    ax.set_ylabel(ylabel)
    ax.set_title("world model: rollout error against horizon", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_pareto(results: dict[str, dict], path: str | Path) -> Path:
    """Success (Wilson 95 % bars) against predictor steps per planning step, one point per agent; agents that
    never call the predictor (random policy, the actor alone) sit at 1 on the log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, r in results.items():
        x = max(1.0, r["predictor_steps_per_plan"])
        lo, hi = r["wilson95"]
        marker = "s" if "oracle" in name else "o"
        ax.errorbar([x], [r["success"]], yerr=[[r["success"] - lo], [hi - r["success"]]], fmt=marker, capsize=3,
                    label=name)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("predictor steps per planning step (log)")
    ax.set_ylabel("success (Wilson 95 %)")
    ax.set_title("success against compute", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, Path(path))


def plot_cost_landscape(costs: np.ndarray, path: str | Path, title: str, best: tuple[float, float] | None = None) -> Path:
    """costs [G, G] over actions (a_x, a_y) in [-1, 1]^2 (rows: a_y); the cheapest grid action marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    im = ax.imshow(costs, origin="lower", extent=(-1, 1, -1, 1), cmap="viridis")
    fig.colorbar(im, ax=ax, label="cost")
    iy, ix = np.unravel_index(np.argmin(costs), costs.shape)
    grid = np.linspace(-1, 1, costs.shape[0])
    ax.plot(grid[ix], grid[iy], "r*", ms=12, label="cheapest")
    if best is not None:
        ax.plot(*best, "wx", ms=10, label="towards the goal (true)")
    ax.set_xlabel("action x")
    ax.set_ylabel("action y")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, Path(path))
