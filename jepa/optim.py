"""AdamW parameter groups, the one rule every module of the project trains with."""
from __future__ import annotations

from collections.abc import Iterable

import torch


def decay_groups(params: Iterable[torch.Tensor]) -> list[dict]:
    """Trainable parameters split for AdamW: weight decay on matrices and other >= 2-D weights, none on biases, norm
    scales and other 1-D parameters (the official I-JEPA rule). The decayed group comes first and is marked
    `apply_wd`, so a weight-decay schedule (jepa.schedules.JEPASchedule) leaves the other group at 0."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]
