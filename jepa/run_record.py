"""RunRecord: every `jepa` run writes results.json (metrics, wall time, provenance) and its curves next to its logs."""
from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from jepa.io import write_json
from jepa.plots import plot_training_curves
from jepa.provenance import provenance


class RunRecord(L.Callback):
    """Writes <log_dir>/results.json at the end of fit/validate and a PNG of the training curves.

    Args:
        enabled: write the record (turn off for throwaway runs).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.config_text: str | None = None  # set by the CLI to the resolved config
        self.started = time.time()
        self.path: Path | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.started = time.time()

    def _write(self, trainer, stage: str) -> None:
        if not self.enabled:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # every rank: log_dir is a collective call
        if not trainer.is_global_zero:
            return
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            v = float(value)
            metrics[key] = v if math.isfinite(v) else str(v)
        record = {
            "stage": stage,
            "metrics": metrics,
            "global_step": trainer.global_step,
            "epochs": trainer.current_epoch,
            "world_size": trainer.world_size,
            "wall_time_s": round(time.time() - self.started, 2),
            "provenance": provenance(self.config_text),
        }
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv_logger is not None:
            csv_logger.save()
            metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
            if metrics_csv.is_file():
                png = plot_training_curves(metrics_csv, log_dir / "training_curves.png")
                record["training_curves_png"] = str(png) if png else None
        self.path = write_json(log_dir / "results.json", record)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, "fit")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.training and trainer.state.fn == "validate":
            self._write(trainer, "validate")
