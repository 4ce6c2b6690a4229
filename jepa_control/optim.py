"""The optimiser every LightningModule of jepa_control trains with."""
from __future__ import annotations

import math

import torch

from jepa.optim import decay_groups


def adamw_cosine(params, lr: float, weight_decay: float, trainer=None, warmup_steps: int = 0) -> dict:
    """AdamW over the trainable ones of `params` (jepa.optim.decay_groups: no decay on biases and norms) with a linear
    warm-up then a cosine decay to 0 over the trainer's max_steps (1000 without a trainer): the optimiser of every
    module of jepa_control."""
    opt = torch.optim.AdamW(decay_groups(params), lr=lr, weight_decay=weight_decay)
    total = max(1, trainer.max_steps if trainer is not None and trainer.max_steps > 0 else 1000)
    warm = min(warmup_steps, total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                               "interval": "step"}}
