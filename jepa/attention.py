"""Attention backend choice for JEPA training on CUDA.

JEPA's context and target token counts change with every batch's masks. torch's cuDNN backend of
scaled_dot_product_attention builds an execution plan per new sequence length: measured on an H200 (torch 2.11,
ViT-B/16 I-JEPA step, batch 128, bf16), 4.4 ms of CPU per forward attention call and 8.5 ms per backward, a step
of 230 ms instead of 65 ms with the flash / memory-efficient kernels (docs/performance.md). With one fixed mask
set cuDNN ran 65 ms too, so it gains nothing where the shapes change: training keeps cuDNN's backend off.
"""
from __future__ import annotations

import torch


def avoid_cudnn_attention(device: torch.device | str) -> bool:
    """On CUDA, turn off the cuDNN SDPA backend for this process (flash / memory-efficient / math remain).
    Returns True where it was on and is now off."""
    if torch.device(device).type != "cuda" or not torch.backends.cuda.cudnn_sdp_enabled():
        return False
    torch.backends.cuda.enable_cudnn_sdp(False)
    return True
