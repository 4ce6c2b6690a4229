"""Exponential moving average of the context encoder into the target encoder."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, as one fused foreach lerp over all parameters.

    Buffers (the fixed position embeddings) are equal by construction and are left alone.
    """
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise RuntimeError("target and online encoders have different parameter lists")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)
