"""Regional torch.compile of transformer blocks, the form training can use with changing token counts."""
from __future__ import annotations

from timm.models.vision_transformer import Block
from torch import nn


def compile_networks(*networks: nn.Module) -> None:
    """torch.compile every transformer block of the networks in place (nn.Module.compile keeps parameter names and
    checkpoints as they are; all blocks of one width share a graph, so compiling takes seconds per shape instead of
    minutes per network, and the rest, patch embedding and gathers, stays eager).

    Shapes are static (dynamic=False: torch 2.11's inductor failed on dynamic token counts on CUDA, docs/performance.md),
    so each new token count is a new graph: with the paper's masks nearly every batch, unless model.pad_tokens rounds
    the counts to a few sizes. The recompile limit is raised so that those few all fit."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))
    for network in networks:
        for module in network.modules():
            if isinstance(module, Block):
                module.compile(dynamic=False)
