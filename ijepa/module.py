"""I-JEPA: predict the target encoder's (layer-normed) embeddings of masked image blocks from a context block."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ijepa.masks import Masks, MultiBlockMaskSampler
from jepa.errors import ConfigError
from jepa.masking import apply_masks
from jepa.module import JEPAModule, check_model_args
from jepa.vit import Predictor, VisionTransformer


class IJEPA(JEPAModule):
    """I-JEPA on images [B, C, H, W].

    Args:
        img_size: input height and width in pixels.
        patch_size: patch side in pixels; must divide img_size.
        in_chans: input channels.
        embed_dim: encoder width.
        depth: encoder blocks.
        num_heads: encoder attention heads.
        predictor_embed_dim: predictor width (paper: 384 for ViT-B and larger; keep <= embed_dim / 2 for small encoders).
        predictor_depth: predictor blocks (paper: 6-12).
        drop_path_rate: stochastic depth of the encoder.
        mask_sampler: the mask sampler, chosen by class_path (default: the paper's multi-block sampler).
        lr: peak learning rate, reached after warmup.
        start_lr: learning rate at step 0.
        final_lr: learning rate at the end of the cosine.
        warmup_fraction: fraction of the optimizer steps spent in linear warmup.
        weight_decay: weight decay at step 0 (cosine schedule; never on biases or 1-D parameters).
        final_weight_decay: weight decay at the last step.
        ema_momentum: target-encoder EMA momentum, linear from the first to the second value over training.
        betas: AdamW betas.
        mask_seed: seed of the mask generator; masks are keyed by (mask_seed, micro-step, rank).
        monitor_every: log RankMe and target-feature std every this many optimizer steps (0: never).
        max_nonfinite_steps: skip a step whose loss or gradient is NaN/inf (no weight or EMA update); stop with
            an error after this many such steps in a row.
        sigreg_weight: add this times SIGReg (LeJEPA) of the context encoder's average-pooled embeddings to the
            loss (0: off, the I-JEPA recipe). Its directions are keyed by (mask_seed, step), like the masks.
        sigreg_slices: random directions of SIGReg.
        predictor_shared_context: a recipe change, off in the paper's recipe: the predictor holds the context once
            for all target blocks and the context stops attending to the mask tokens (jepa.vit.Predictor); fewer
            predictor tokens per image (README, Performance, for its speed and probe A/B).
        pad_tokens: round each batch's context and target token counts up to a multiple of this (0: off); the
            padding is masked out of attention and cut from the outputs, so the loss and gradients are the same,
            but the networks see a few tensor shapes instead of one per mask size (what torch_compile needs).
        torch_compile: torch.compile every transformer block when fitting starts (static shapes, one graph per token
            count: use it with pad_tokens, e.g. 16 at 224 px; meant for GPUs, slower on the 2-core CPU: README).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        predictor_embed_dim: int = 384,
        predictor_depth: int = 12,
        drop_path_rate: float = 0.0,
        mask_sampler: MultiBlockMaskSampler | None = None,
        lr: float = 1e-3,
        start_lr: float = 2e-4,
        final_lr: float = 1e-6,
        warmup_fraction: float = 40 / 300,
        weight_decay: float = 0.04,
        final_weight_decay: float = 0.4,
        ema_momentum: tuple[float, float] = (0.996, 1.0),
        betas: tuple[float, float] = (0.9, 0.999),
        mask_seed: int = 0,
        monitor_every: int = 50,
        max_nonfinite_steps: int = 5,
        sigreg_weight: float = 0.0,
        sigreg_slices: int = 256,
        predictor_shared_context: bool = False,
        pad_tokens: int = 0,
        torch_compile: bool = False,
    ) -> None:
        check_model_args(sigreg_weight, sigreg_slices, predictor_embed_dim, num_heads)
        encoder = VisionTransformer(img_size, patch_size, in_chans, embed_dim, depth, num_heads, drop_path_rate=drop_path_rate)
        predictor = Predictor(encoder.grid, embed_dim, predictor_embed_dim, predictor_depth, num_heads,
                              shared_context=predictor_shared_context)
        super().__init__(
            encoder, predictor, lr=lr, start_lr=start_lr, final_lr=final_lr, warmup_fraction=warmup_fraction,
            weight_decay=weight_decay, final_weight_decay=final_weight_decay, ema_momentum=ema_momentum,
            betas=betas, mask_seed=mask_seed, monitor_every=monitor_every, max_nonfinite_steps=max_nonfinite_steps,
            pad_tokens=pad_tokens, torch_compile=torch_compile,
        )
        self.mask_sampler = mask_sampler if mask_sampler is not None else MultiBlockMaskSampler()
        # The sampler is rebuilt from the saved config.yaml, not pickled into checkpoints (weights_only loading).
        self.save_hyperparameters(ignore=["mask_sampler"])

    def sample_masks(self, batch, generator: torch.Generator) -> Masks:
        x = self.images(batch)
        size = (self.hparams.img_size, self.hparams.img_size)
        if tuple(x.shape[-2:]) != size or x.shape[1] != self.hparams.in_chans:
            raise ConfigError(
                f"images of shape {tuple(x.shape[1:])} do not match model.in_chans={self.hparams.in_chans}, "
                f"model.img_size={self.hparams.img_size}: make the data's image size and channels match the model"
            )
        return self.mask_sampler(x.shape[0], (self.encoder.grid, self.encoder.grid), generator)

    def jepa_loss(self, batch, masks: Masks) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images(batch)
        targets = list(masks.targets)
        with torch.no_grad():
            full = self.target_encoder(x)
            h = F.layer_norm(full, (full.size(-1),))
            h = apply_masks(h, targets)
        z, pred = self.context_and_predictions(x, masks.context, targets)
        loss = F.smooth_l1_loss(pred.float(), h.float())
        return self.add_sigreg(loss, [z]), full
