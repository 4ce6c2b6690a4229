"""Exponential moving average of the context encoder into the target encoder."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from jepa.sharding import is_sharded


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, as one fused foreach lerp over all parameters.

    Buffers (the fixed position embeddings) are equal by construction and are left alone. Sharded (FSDP2)
    encoders hold DTensors: both networks are sharded alike (sharding.py), so the lerp runs on the local shards.
    """
    for net in (target, online):
        if is_sharded(net):
            net.reshard()  # an FSDP2 root keeps its parameters gathered after a forward that has no backward
    t_params = [_local(p) for p in target.parameters()]
    o_params = [_local(p.detach()) for p in online.parameters()]
    if len(t_params) != len(o_params) or any(t.shape != o.shape for t, o in zip(t_params, o_params)):
        raise RuntimeError("target and online encoders have different parameter lists or shards")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)


def _local(p: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor parameter (a plain tensor is its own shard)."""
    return p.to_local() if isinstance(p, DTensor) else p
