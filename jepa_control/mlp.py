"""The small MLP head of the actor and the energy: Linear + GELU per hidden layer, then a linear output."""
from __future__ import annotations

from torch import nn


def mlp(in_width: int, hidden: int, depth: int, out_width: int) -> nn.Sequential:
    """Layers indexed 0, 2, 4, ... as the actor's and energy's checkpoints name them (mlp.0, mlp.2, ...)."""
    layers, width = [], in_width
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_width))
