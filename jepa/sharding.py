"""FSDP2 sharding of a JEPA module (torch's `fully_shard`) under Lightning's ModelParallelStrategy.

The context encoder, the EMA target encoder and the predictor are each sharded block by block over the same
data-parallel mesh, so a parameter of the target encoder and its counterpart in the context encoder hold the same
slice on every rank: the EMA update is then a purely local lerp of the shards (ema.py), with no gather. (The
official code walks `zip(encoder.parameters(), target_encoder.parameters())` on whatever the wrapper exposes, which
breaks once the parameters are flattened or sharded differently.)
"""
from __future__ import annotations

from torch import nn


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def shard_jepa(encoder: nn.Module, target_encoder: nn.Module, predictor: nn.Module, mesh) -> None:
    """fully_shard every transformer block, then each of the three networks (their embeddings, norms and heads),
    over `mesh` (1-D, data parallel). Idempotent: a second call leaves sharded networks alone."""
    import torch
    from torch.distributed.fsdp import fully_shard

    from jepa.errors import ConfigError

    cpu = mesh.device_type == "cpu"
    if cpu and not hasattr(torch.cpu.Stream, "record_event"):  # FSDP2 on CPU needs the CPU stream events of torch 2.7
        raise ConfigError(f"FSDP on CPU needs torch >= 2.7 (this is {torch.__version__}); use the ddp strategy or GPUs")
    for net, blocks in ((encoder, encoder.blocks), (target_encoder, target_encoder.blocks),
                        (predictor, predictor.predictor_blocks)):
        if is_sharded(net):
            continue
        for block in blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(net, mesh=mesh)
