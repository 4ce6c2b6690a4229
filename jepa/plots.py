"""PNG plots people look at: training curves from Lightning's CSV log."""
from __future__ import annotations

import csv
import math
from pathlib import Path


def read_metric(metrics_csv: str | Path, key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            raw = row.get(key, "")
            if raw not in ("", None):
                steps.append(int(float(row.get("step") or 0)))
                values.append(float(raw))
    return steps, values


def plot_training_curves(metrics_csv: str | Path, out_png: str | Path,
                         keys=("train/loss", "train/rankme", "train/target_std")) -> Path | None:
    """One panel per logged key that has values; None if none had any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(k, *read_metric(metrics_csv, k)) for k in keys]
    series = [s for s in series if s[1]]
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (key, steps, values) in zip(axes[0], series):
        ax.plot(steps, values, lw=1)
        ax.set_title(key)
        ax.set_xlabel("optimizer step")
        if key.endswith("loss") and min(values) > 0 and max(values) / min(values) > 20 and not any(map(math.isnan, values)):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
