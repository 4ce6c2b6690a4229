"""Online monitors during pretraining: kNN and linear accuracy on a small labelled subset, RankMe, feature std.

The labelled subset comes from the datamodule's `monitor_data(n_fit, n_query, seed)`, two disjoint parts of the
*training* split (test labels are never seen). Every `every_n_steps` optimizer steps the target encoder embeds both
parts (images: the average-pooled last layer; uint8 clips [N, T, C, H, W]: the time-pooled tokens the clip probes'
linear probe and kNN see, so a temporal label can be followed); a kNN classifier and a linear probe fitted on the
first part are scored on the second, and RankMe (of the centred features) / feature std are taken on the second
part. A RankMe that falls below `collapse_fraction` of the best value seen in the run, or below `min_rankme`, gives a
warning: the encoder is collapsing onto a few directions. Values go to every logger (CSV / TensorBoard) at the step
they were measured, and to monitors.json / monitors.png in the log folder.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import torch

from eval.clip_probe import time_pooled_features
from eval.knn import knn_accuracy
from eval.linear_probe import linear_probe
from jepa.io import write_json
from jepa.metrics import feature_std, rankme


class EncoderCollapseWarning(UserWarning):
    pass


class OnlineProbe(L.Callback):
    """kNN / linear accuracy, RankMe and feature std of the target encoder every N steps, logged as `monitor/*`.

    Args:
        every_n_steps: run the monitors every this many optimizer steps (and at step 0 and at the end).
        fit_samples: labelled training images the kNN memory and the linear probe are fitted on.
        query_samples: other labelled training images they are scored on.
        k: neighbours of the kNN classifier (cosine, temperature-weighted votes).
        temperature: kNN vote temperature.
        linear_epochs: epochs of the small linear probe.
        collapse_fraction: warn when RankMe falls below this fraction of the best RankMe seen so far.
        min_rankme: warn when RankMe falls below this value (1 = every image maps to one direction).
        plot: write monitors.png (curves over steps and RankMe against probe accuracy) at the end of fit
            (monitors.json, the numbers, is written either way).
        at_start: also measure before the first step (the curves' starting point).
        seed: which images form the subset.
    """

    def __init__(self, every_n_steps: int = 500, fit_samples: int = 2000, query_samples: int = 1000, k: int = 20,
                 temperature: float = 0.07, linear_epochs: int = 30, collapse_fraction: float = 0.25,
                 min_rankme: float = 1.5, plot: bool = True, at_start: bool = True, seed: int = 0) -> None:
        if every_n_steps < 1 or fit_samples < 1 or query_samples < 2:
            raise ValueError("OnlineProbe needs every_n_steps >= 1, fit_samples >= 1 and query_samples >= 2")
        self.every_n_steps, self.fit_samples, self.query_samples = every_n_steps, fit_samples, query_samples
        self.k, self.temperature, self.linear_epochs = k, temperature, linear_epochs
        self.collapse_fraction, self.min_rankme, self.plot, self.seed = collapse_fraction, min_rankme, plot, seed
        self.at_start = at_start
        self.history: list[dict] = []
        self._data = None
        self._disabled = False
        self._collapsed = False

    # ---- data ----------------------------------------------------------------------------------------------------
    def _labelled(self, trainer):
        if self._data is None and not self._disabled:
            source = getattr(trainer.datamodule, "monitor_data", None)
            if source is None:
                self._disabled = True
                warnings.warn(f"OnlineProbe: {type(trainer.datamodule).__name__} has no monitor_data(); "
                              "online kNN/linear monitors are off (RankMe is still logged by the module)")
            else:
                self._data = source(self.fit_samples, self.query_samples, self.seed)
        return self._data

    @torch.no_grad()
    def _embed(self, encoder, x: torch.Tensor, device, normalisation: dict | None) -> torch.Tensor:
        if x.dim() == 5:
            if normalisation is None:
                raise ValueError("OnlineProbe: clip monitor data needs the datamodule's `normalisation` (mean, std)")
            return time_pooled_features(encoder, x, normalisation["mean"], normalisation["std"], progress=False)
        return torch.cat([encoder(b.to(device)).float().mean(1).cpu() for b in x.split(256)])

    # ---- measuring ----------------------------------------------------------------------------------------------
    def measure(self, trainer, pl_module) -> dict | None:
        data = self._labelled(trainer)
        if data is None:
            return None
        (fit_x, fit_y), (query_x, query_y) = data
        encoder = pl_module.target_encoder
        was_training = encoder.training
        encoder.eval()
        normalisation = getattr(trainer.datamodule, "normalisation", None)
        fit_f = self._embed(encoder, fit_x, pl_module.device, normalisation)
        query_f = self._embed(encoder, query_x, pl_module.device, normalisation)
        encoder.train(was_training)
        with torch.random.fork_rng(devices=[]):  # the probe's own seeded generator; training RNG untouched
            # The minibatch solver, pinned: the monitor's numbers stay comparable across runs and machines.
            linear = linear_probe(fit_f, fit_y, query_f, query_y, solver="adamw", weight_decays=(1e-4,),
                                  epochs=self.linear_epochs, batch_size=256, seed=self.seed).test_acc
        row = {
            "step": trainer.global_step,
            "knn_acc": knn_accuracy(fit_f, fit_y, query_f, query_y, self.k, self.temperature),
            "linear_acc": linear,
            "rankme": rankme(query_f, center=True),
            "feature_std": feature_std(query_f),
        }
        best = max([r["rankme"] for r in self.history] + [row["rankme"]])
        floor = max(self.min_rankme, self.collapse_fraction * best)
        collapsed = row["rankme"] < floor
        if collapsed and not self._collapsed:
            warnings.warn(EncoderCollapseWarning(
                f"step {row['step']}: RankMe of the target encoder's centred features fell to {row['rankme']:.2f} "
                f"(best so far {best:.2f}, warning below {floor:.2f}): the representation is collapsing "
                "(try a higher EMA start, a lower learning rate, or stronger augmentation)"))
        self._collapsed = collapsed
        return row

    def _run(self, trainer, pl_module) -> None:
        if self.history and self.history[-1]["step"] == trainer.global_step:
            return
        row = self.measure(trainer, pl_module) if trainer.is_global_zero else None
        if row is not None:
            self.history.append(row)
            # Straight to the loggers: self.log from a batch hook only reaches them on log_every_n_steps multiples.
            metrics = {f"monitor/{k}": float(v) for k, v in row.items() if k != "step"}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_start:
            self._run(trainer, pl_module)  # step 0: the random-init (or resumed) starting point of the curves

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        done = step >= trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else False
        if step % self.every_n_steps == 0 or done:
            self._run(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # the last epoch of an epoch-bounded run; max_epochs -1 (or None) means the run is bounded by steps
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        if last:
            self._run(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.history:  # the curves' numbers always; their picture if asked
            out = Path(trainer.log_dir or trainer.default_root_dir)
            write_json(out / "monitors.json", {"history": self.history})
            if self.plot:
                plot_monitors(self.history, out / "monitors.png")

    # ---- resume: the curves continue across restarts --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [dict(r) for r in state_dict.get("history", [])]


def plot_monitors(history: list[dict], out_png: str | Path) -> Path:
    """Left: accuracy and RankMe over training. Right: RankMe against kNN / linear accuracy, coloured by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax.plot(steps, [100 * r["knn_acc"] for r in history], "o-", ms=3, label="kNN acc (%)")
    ax.plot(steps, [100 * r["linear_acc"] for r in history], "s-", ms=3, label="linear acc (%)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("accuracy on the monitor subset (%)")
    twin = ax.twinx()
    twin.plot(steps, [r["rankme"] for r in history], "k--", lw=1, label="RankMe")
    twin.set_ylabel("RankMe")
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    for key, marker in (("knn_acc", "o"), ("linear_acc", "s")):
        sc = ax2.scatter([r["rankme"] for r in history], [100 * r[key] for r in history], c=steps, marker=marker,
                         cmap="viridis", s=18, label=key.replace("_acc", ""))
    fig.colorbar(sc, ax=ax2, label="optimizer step")
    ax2.set_xlabel("RankMe")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
