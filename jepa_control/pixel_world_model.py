"""A world model that trains its encoder too, from pixels (LeWM's recipe: encoder and predictor trained end to end
on the prediction loss, with SIGReg on the frame embeddings against collapse instead of an EMA target).

Where a frozen, separately pretrained encoder does not keep what the dynamics need (a 3-pixel pusher beside a block
that fills the tokens), the prediction loss itself shapes the latents. The gradient reaches both the predictions
and their targets (no stop-gradient, as in LeWM); SIGReg keeps the frame embeddings spread like an isotropic
Gaussian, so predicting a constant does not pay. The trained encoder is then frozen: the checkpoint reads back as a
plain WorldModel (`WorldModel.from_checkpoint`), so `jepa plan`, the actor and the energy take it unchanged.
"""
from __future__ import annotations

import torch

from jepa.sigreg import sigreg
from jepa.vit import VisionTransformer
from jepa_control.encoding import FrozenEncoder
from jepa_control.optim import adamw_cosine
from jepa_control.world_model import WorldModel

# WorldModel's options measured on fixed latents, off here: the latents move as the encoder trains
FIXED_LATENT_OPTIONS = {"motion": False, "whiten": False, "whiten_dims": 0, "position_readout": False,
                        "position_weight": 0.0}


class PixelWorldModel(WorldModel):
    """The world model of jepa_control/world_model.py over an encoder trained with it from pixels.

    Args:
        encoder: the ViT's architecture (jepa.vit.VisionTransformer arguments: img_size, patch_size, in_chans,
            embed_dim, depth, num_heads, and stem: conv for early convolutions in place of the patch projection),
            trained from random init.
        mean, std: per-channel normalisation of the frames (the data's).
        pool_grid, fold: how the patch tokens become the predictor's latents (FrozenEncoder: average-pooled to a
            pool_grid x pool_grid grid, fold x fold blocks concatenated); not layer-normed: SIGReg keeps their scale.
        sigreg_weight: weight of SIGReg on the frame embeddings (each frame's latents flattened; tested at each
            time step of the windows over the batch, then averaged); LeWM's default is 0.1 (its ablation: a wide
            range works).
        sigreg_slices: random 1-D projections SIGReg tests per step.
        action_dim, embed_dim, depth, num_heads, context, rollout_steps, rollout_weight, rollout_history, loss, lr,
            weight_decay, warmup_steps, frameskip, proprio_scale, proprio_dim: as WorldModel's (the encoder trains
            at the same learning rate). The statistics WorldModel measures on fixed latents (motion, whiten,
            position_readout) do not apply to latents that move as the encoder trains.
    """

    def __init__(self, encoder: dict, mean: tuple[float, ...], std: tuple[float, ...], pool_grid: int = 2,
                 fold: int = 1, sigreg_weight: float = 0.1, sigreg_slices: int = 256, action_dim: int = 2,
                 embed_dim: int = 64, depth: int = 3, num_heads: int = 4, context: int = 2, rollout_steps: int = 3,
                 rollout_weight: float = 1.0, rollout_history: int = 1, loss: str = "mse", lr: float = 1e-3,
                 weight_decay: float = 0.01, warmup_steps: int = 100, frameskip: int = 1,
                 proprio_scale: float = 0.0, proprio_dim: int = 2, state_dim: int = 0,
                 state_weight: float = 0.0) -> None:
        frames = FrozenEncoder(VisionTransformer(**encoder), mean, std, pool_grid, fold=fold, layer_norm=False,
                               source="trained with the world model")
        frames.encoder.requires_grad_(True)  # frozen only once trained
        super().__init__(frames, action_dim, embed_dim, depth, num_heads, context, rollout_steps, rollout_weight,
                         rollout_history, loss=loss, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                         frameskip=frameskip, proprio_scale=proprio_scale, proprio_dim=proprio_dim,
                         state_dim=state_dim, state_weight=state_weight, **FIXED_LATENT_OPTIONS)
        # recorded beside this constructor's arguments (under LightningCLI, save_hyperparameters() keeps only those)
        self.hparams.update(FIXED_LATENT_OPTIONS)

    def losses(self, batch) -> dict[str, torch.Tensor]:
        frames = batch["frames"]  # uint8 [B, W, H, W, C]
        self.frozen_encoder.check_frames(frames.shape)
        latents = self.frozen_encoder.embed(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])  # [B, W, N, D]
        out = super().losses({"latents": latents, "actions": batch["actions"], "proprio": batch.get("proprio"),
                              "state": batch.get("state")})
        # per time step, over the batch's windows (as LeWM): a window's frames are near copies of each other, and
        # pooled together they would read as clusters however Gaussian the episodes' spread
        out["sigreg"] = torch.stack([sigreg(latents[:, t].flatten(1), self.hparams.sigreg_slices)
                                     for t in range(latents.shape[1])]).mean()
        out["loss"] = out["loss"] + self.hparams.sigreg_weight * out["sigreg"]
        return out

    def configure_optimizers(self):
        return adamw_cosine([*self.frozen_encoder.encoder.parameters(), *self.trained_parameters()],
                            self.hparams.lr, self.hparams.weight_decay, self.trainer, self.hparams.warmup_steps)

    @classmethod
    def from_checkpoint(cls, path: str, encoder_ckpt: str | None = None) -> WorldModel:
        """The trained model, its encoder frozen: a WorldModel (what planning reads)."""
        return WorldModel.from_checkpoint(path, encoder_ckpt)
