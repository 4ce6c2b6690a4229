"""Schedules counted in optimizer steps: warmup + cosine LR, cosine weight decay, linear EMA momentum.

They live in one LRScheduler so Lightning steps them once per optimizer step (accumulation aware) and saves
their position in every checkpoint: a resumed run continues all three where it stopped.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def warmup_cosine(step: int, total: int, warmup: int, start: float, ref: float, final: float) -> float:
    """Linear start -> ref over `warmup` steps, then cosine ref -> final at `total`."""
    if step < warmup:
        return start + (ref - start) * step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return ref + (final - ref) * 0.5 * (1.0 - math.cos(math.pi * progress))


def cosine(step: int, total: int, start: float, final: float) -> float:
    progress = min(1.0, step / max(1, total))
    return start + (final - start) * 0.5 * (1.0 - math.cos(math.pi * progress))


def linear(step: int, total: int, start: float, final: float) -> float:
    return start + (final - start) * min(1.0, step / max(1, total))


class JEPASchedule(LRScheduler):
    """Sets every group's lr, and the weight decay of groups whose `apply_wd` is true, from the step count."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int,
        start_lr: float,
        lr: float,
        final_lr: float,
        weight_decay: float,
        final_weight_decay: float,
    ) -> None:
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.start_lr, self.ref_lr, self.final_lr = start_lr, lr, final_lr
        self.ref_wd, self.final_wd = weight_decay, final_weight_decay
        super().__init__(optimizer)

    def lr_at(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, self.start_lr, self.ref_lr, self.final_lr)

    def wd_at(self, step: int) -> float:
        return cosine(step, self.total_steps, self.ref_wd, self.final_wd)

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch)] * len(self.optimizer.param_groups)

    def step(self, epoch=None) -> None:  # noqa: ARG002 - signature of LRScheduler
        super().step()
        wd = self.wd_at(self.last_epoch)
        for group in self.optimizer.param_groups:
            group["weight_decay"] = wd if group.get("apply_wd", True) else 0.0
