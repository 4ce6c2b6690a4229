"""Skipping optimizer steps whose loss or gradients are NaN/inf, on every rank together, and stopping after too many."""
from __future__ import annotations

import warnings

import torch
from torch.distributed.tensor import DTensor


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss or gradient; the message says what to do."""


def any_rank(flag: torch.Tensor, trainer) -> bool:
    """Whether a boolean flag is set on some rank (every rank gets the same answer, so none waits on another)."""
    flag = flag.float()
    if trainer is not None and trainer.world_size > 1:
        flag = trainer.strategy.reduce(flag, reduce_op="max")
    return bool(flag)


class NonFiniteGuard:
    """Marks the current step to be skipped (no weight, optimizer-state or EMA update) when its loss or gradients
    are not finite; raises NonFiniteTrainingError after more than `max_in_a_row` such steps in a row."""

    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0  # consecutive skipped steps
        self.total = 0
        self.skip = False

    def loss_is_bad(self, loss: torch.Tensor, trainer) -> bool:
        bad = any_rank((~torch.isfinite(loss.detach())).any(), trainer)
        if bad:
            self.note("loss", trainer)
        return bad

    def check_gradients(self, optimizer, trainer) -> None:
        """Marks the step when a gradient is not finite, then drops the gradients of a marked step."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not self.skip and grads:
            sharded = isinstance(grads[0], DTensor)  # FSDP: each rank checks its shard, then all ranks agree
            bad = ~torch.stack([torch.isfinite(g.to_local() if sharded else g).all() for g in grads]).all()
            if any_rank(bad, trainer) if sharded else bool(bad):
                self.note("gradient", trainer)  # DDP gradients are already reduced: every rank agrees
        if self.skip:
            optimizer.zero_grad(set_to_none=True)  # AdamW skips parameters without gradients

    def step_taken(self) -> None:
        self.in_a_row = 0

    def note(self, what: str, trainer) -> None:
        self.skip = True
        self.in_a_row += 1
        self.total += 1
        step = trainer.global_step if trainer is not None else -1
        if trainer is None or trainer.is_global_zero:
            warnings.warn(f"step {step}: non-finite {what}, step skipped ({self.in_a_row} in a row, "
                          f"{self.total} in all)", stacklevel=3)
        if self.in_a_row > self.max_in_a_row:
            raise NonFiniteTrainingError(
                f"non-finite {what} for {self.in_a_row} steps in a row (up to step {step}), more than "
                f"model.max_nonfinite_steps={self.max_in_a_row}: training stopped; the last checkpoint holds "
                "finite weights. Lower model.lr, check the data, or resume from an earlier checkpoint")
