"""V-JEPA: predict the target encoder's (layer-normed) embeddings of masked space-time blocks of a clip."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jepa.errors import ConfigError
from jepa.masking import apply_masks
from jepa.module import JEPAModule, check_model_args
from jepa.vit import Predictor, VisionTransformer
from vjepa.masks import MultiBlock3DMaskSampler, VideoMasks


class VJEPA(JEPAModule):
    """V-JEPA on clips [B, T, C, H, W] (the layout of the clip datamodules).

    Args:
        img_size: frame height and width in pixels.
        patch_size: spatial patch side; must divide img_size.
        num_frames: frames per clip; a multiple of tubelet_size.
        tubelet_size: frames per tubelet (paper: 2).
        uniform_power: the 3-D sin-cos embedding gives time, rows and columns equal channels (official configs: true).
        in_chans: input channels.
        embed_dim, depth, num_heads: the encoder.
        predictor_embed_dim, predictor_depth: the predictor (paper: 384 x 12); it uses the encoder's heads.
        drop_path_rate: stochastic depth of the encoder.
        mask_sampler: 3-D multi-block sampler (default: the paper's short-range + long-range configurations); the
            predictor gets one zero-initialised mask token per configuration.
        lr, start_lr, final_lr, warmup_fraction, weight_decay, final_weight_decay, ema_momentum, betas, mask_seed,
        monitor_every, max_nonfinite_steps: as in ijepa.IJEPA (paper: EMA 0.998 -> 1, LR 2e-4 -> 6.25e-4 -> 1e-6).
        sigreg_weight, sigreg_slices: as in ijepa.IJEPA (SIGReg of each configuration's pooled context embeddings,
            averaged; 0 = the paper's recipe).
        pad_tokens, torch_compile: as in ijepa.IJEPA (token counts padded to a multiple, masked out: the same
            loss in a few shapes; torch.compile of every transformer block when fitting starts).
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
        start_lr: float = 2e-4,
        final_lr: float = 1e-6,
        warmup_fraction: float = 40 / 300,
        weight_decay: float = 0.04,
        final_weight_decay: float = 0.4,
        ema_momentum: tuple[float, float] = (0.998, 1.0),
        betas: tuple[float, float] = (0.9, 0.999),
        mask_seed: int = 0,
        monitor_every: int = 50,
        max_nonfinite_steps: int = 5,
        sigreg_weight: float = 0.0,
        sigreg_slices: int = 256,
        pad_tokens: int = 0,
        torch_compile: bool = False,
    ) -> None:
        check_model_args(sigreg_weight, sigreg_slices, predictor_embed_dim, num_heads)
        if num_frames < 2:
            raise ConfigError(f"model.num_frames must be >= 2 for a video model, got {num_frames}")
        sampler = mask_sampler if mask_sampler is not None else MultiBlock3DMaskSampler()
        encoder = VisionTransformer(img_size, patch_size, in_chans, embed_dim, depth, num_heads,
                                    drop_path_rate=drop_path_rate, num_frames=num_frames, tubelet_size=tubelet_size,
                                    uniform_power=uniform_power)
        predictor = Predictor(encoder.grid, embed_dim, predictor_embed_dim, predictor_depth, num_heads,
                              grid_t=encoder.grid_t, uniform_power=uniform_power,
                              num_mask_tokens=len(sampler.configs))
        super().__init__(
            encoder, predictor, lr=lr, start_lr=start_lr, final_lr=final_lr, warmup_fraction=warmup_fraction,
            weight_decay=weight_decay, final_weight_decay=final_weight_decay, ema_momentum=ema_momentum,
            betas=betas, mask_seed=mask_seed, monitor_every=monitor_every, max_nonfinite_steps=max_nonfinite_steps,
            pad_tokens=pad_tokens, torch_compile=torch_compile,
        )
        self.mask_sampler = sampler
        self.save_hyperparameters(ignore=["mask_sampler"])

    def clip(self, batch) -> torch.Tensor:
        """[B, T, C, H, W] clip of a batch -> the encoder's [B, C, T, H, W], after checking its shape."""
        x = self.images(batch)
        hp = self.hparams
        want = (hp.num_frames, hp.in_chans, hp.img_size, hp.img_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != want:
            raise ConfigError(f"clips of shape {tuple(x.shape[1:])} do not match the model's [T, C, H, W] = {list(want)} "
                              "(model.num_frames, in_chans, img_size): make the data and the model agree")
        return x.transpose(1, 2)

    def sample_masks(self, batch, generator: torch.Generator) -> list[VideoMasks]:
        x = self.clip(batch)
        return self.mask_sampler(x.shape[0], (self.encoder.grid_t, self.encoder.grid, self.encoder.grid), generator)

    def jepa_loss(self, batch, masks: list[VideoMasks]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over mask configurations of the L1 distance between predictions and layer-normed targets."""
        x = self.clip(batch)
        with torch.no_grad():
            full = self.target_encoder(x)
            h = F.layer_norm(full, (full.size(-1),))
        losses, contexts = [], []
        for i, m in enumerate(masks):
            z, pred = self.context_and_predictions(x, m.context, [m.target], mask_index=i)
            losses.append(F.l1_loss(pred.float(), apply_masks(h, m.target).float()))
            contexts.append(z)
        return self.add_sigreg(torch.stack(losses).mean(), contexts), full
