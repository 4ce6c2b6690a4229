"""V-JEPA: predict the target encoder's (layer-normed) embeddings of masked space-time blocks of a clip."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jepa.errors import ConfigError
from jepa.module import JEPA, batch_inputs, check_predictor_width
from jepa.vit import Predictor, VisionTransformer
from vjepa.masks import MultiBlock3DMaskSampler


class ClipInput:
    """A batch's clips [B, T, C, H, W] (the clip datamodules' layout) -> the encoder's [B, C, T, H, W], checked."""

    def __init__(self, num_frames: int, in_chans: int, img_size: int) -> None:
        self.shape = (num_frames, in_chans, img_size, img_size)

    def __call__(self, batch) -> torch.Tensor:
        x = batch_inputs(batch)
        if x.dim() != 5 or tuple(x.shape[1:]) != self.shape:
            raise ConfigError(f"clips of shape {tuple(x.shape[1:])} do not match the model's [T, C, H, W] = "
                              f"{list(self.shape)} (model.num_frames, in_chans, img_size): make the data and the "
                              "model agree")
        return x.transpose(1, 2)


class VJEPA(JEPA):
    """V-JEPA on clips [B, T, C, H, W]: a tubelet ViT, the paper's 3-D multi-block masks (several configurations,
    one target each, averaged) and an L1 objective. Training options are jepa.module.JEPA's (`jepa fit --model
    vjepa.VJEPA --model.help`); lr and ema_momentum default to the V-JEPA paper's.

    Args:
        img_size: frame height and width in pixels.
        patch_size: spatial patch side; must divide img_size.
        num_frames: frames per clip; a multiple of tubelet_size.
        tubelet_size: frames per tubelet (paper: 2).
        uniform_power: the 3-D sin-cos embedding gives time, rows and columns equal channels (official configs: true).
        in_chans: input channels.
        embed_dim: encoder width.
        depth: encoder blocks.
        num_heads: encoder attention heads.
        predictor_embed_dim: predictor width (paper: 384); it uses the encoder's heads.
        predictor_depth: predictor blocks (paper: 12).
        drop_path_rate: stochastic depth of the encoder.
        mask_sampler: 3-D multi-block sampler (default: the paper's short-range + long-range configurations); the
            predictor gets one zero-initialised mask token per configuration.
        lr: peak learning rate (paper: 6.25e-4).
        ema_momentum: target-encoder EMA momentum, linear from the first to the second value (paper: 0.998 -> 1).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        uniform_power: bool = True,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        predictor_embed_dim: int = 384,
        predictor_depth: int = 12,
        drop_path_rate: float = 0.0,
        mask_sampler: MultiBlock3DMaskSampler | None = None,
        lr: float = 6.25e-4,
        ema_momentum: tuple[float, float] = (0.998, 1.0),
        **training,
    ) -> None:
        check_predictor_width(predictor_embed_dim, num_heads)
        if num_frames < 2:
            raise ConfigError(f"model.num_frames must be >= 2 for a video model, got {num_frames}")
        sampler = mask_sampler if mask_sampler is not None else MultiBlock3DMaskSampler()
        encoder = VisionTransformer(img_size, patch_size, in_chans, embed_dim, depth, num_heads,
                                    drop_path_rate=drop_path_rate, num_frames=num_frames, tubelet_size=tubelet_size,
                                    uniform_power=uniform_power)
        predictor = Predictor(encoder.grid, embed_dim, predictor_embed_dim, predictor_depth, num_heads,
                              grid_t=encoder.grid_t, uniform_power=uniform_power,
                              num_mask_tokens=len(sampler.configs))
        super().__init__(encoder, predictor, sampler, ClipInput(num_frames, in_chans, img_size), F.l1_loss,
                         lr=lr, ema_momentum=ema_momentum, **training)
        self.save_hyperparameters(ignore=["mask_sampler"])
