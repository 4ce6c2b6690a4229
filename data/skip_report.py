"""SkipReport: logs the bad samples a datamodule skipped in each epoch (summed over ranks) and warns when any were.

A datamodule that skips samples gives `skip_reasons` (names), `close_epoch()` (this rank's counts per reason in the
epoch that ended) and `epoch_reports` (a list the totals are appended to); attach() adds the callback once.
"""
from __future__ import annotations

import warnings

import lightning as L
import torch


class SkipReport(L.Callback):
    def __init__(self, datamodule) -> None:
        self.datamodule = datamodule

    @classmethod
    def attach(cls, datamodule) -> None:
        trainer = datamodule.trainer
        if trainer is not None and not any(isinstance(c, cls) for c in trainer.callbacks):
            trainer.callbacks.append(cls(datamodule))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        reasons = self.datamodule.skip_reasons
        counts = self.datamodule.close_epoch()
        total = trainer.strategy.reduce(torch.tensor(counts, dtype=torch.float64), reduce_op="sum")
        self.datamodule.epoch_reports.append(dict(zip(reasons, (int(v) for v in total.tolist()))))
        pl_module.log_dict({f"data/skipped_{r}": v for r, v in zip(reasons, total.tolist())}, sync_dist=False)
        if trainer.is_global_zero and total.sum() > 0:
            detail = ", ".join(f"{r} {int(v)}" for r, v in zip(reasons, total.tolist()) if v)
            warnings.warn(f"epoch {trainer.current_epoch}: skipped {int(total.sum())} bad samples ({detail}); "
                          "the log above names each file", stacklevel=1)
