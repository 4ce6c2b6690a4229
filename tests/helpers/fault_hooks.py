"""Callbacks that inject faults into a run, for the reliability tests and tests/helpers/fault_injection.py.

Add one to a `jepa fit` command line with
  --trainer.callbacks+='{"class_path": "tests.helpers.fault_hooks.KillAt", "init_args": {"step": 7}}'
"""
from __future__ import annotations

import os
import signal

import lightning as L
import torch


class KillAt(L.Callback):
    """Sends `sig` (default SIGKILL) to this process in the middle of optimizer step `step` (after its forward
    and backward, before the weights change), as a crash or a preemption notice would arrive. With `rank`, only
    that process of a multi-process run, which first leaves a file `killed` in the run folder."""

    def __init__(self, step: int, sig: str = "SIGKILL", rank: int | None = None) -> None:
        self.step, self.sig, self.rank = step, getattr(signal, sig), rank

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            if self.rank is not None:
                open(os.path.join(trainer.default_root_dir, "killed"), "w").close()
            os.kill(os.getpid(), self.sig)


class PoisonBatch(L.Callback):
    """Writes a NaN into the input of the batch of optimizer step `step`, as a corrupt sample would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            images.view(-1)[0] = float("nan")


class InfGradientAt(L.Callback):
    """Puts an inf into one gradient at the listed optimizer steps (the loss itself stays finite)."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step in self.steps:
            param = next(p for p in pl_module.parameters() if p.grad is not None)
            param.grad.view(-1)[0] = torch.inf
