"""I-JEPA: predict the target encoder's (layer-normed) embeddings of masked image blocks from a context block."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ijepa.masks import MultiBlockMaskSampler
from ijepa.views import ViewInvariance
from jepa.errors import ConfigError
from jepa.module import JEPA, batch_inputs, check_predictor_width
from jepa.seeding import key_seed
from jepa.vit import Predictor, VisionTransformer


def local_views(batch) -> torch.Tensor | None:
    """The local views [B, L, C, h, w] of a batch whose inputs are (views, local views) (data.local_views > 0)."""
    x = batch_inputs(batch)
    return x[1] if isinstance(x, (tuple, list)) else None


class ImageInput:
    """A batch's images [B, C, H, W], or their augmented views [B, V, C, H, W] (data.views > 1), checked against the
    model's size and channels. With local views the inputs are the pair (views, local views): this gives the views,
    `local_views` the others."""

    def __init__(self, img_size: int, in_chans: int) -> None:
        self.img_size, self.in_chans = img_size, in_chans

    def __call__(self, batch) -> torch.Tensor:
        x = batch_inputs(batch)
        if isinstance(x, (tuple, list)):
            x = x[0]
        if (x.dim() not in (4, 5) or tuple(x.shape[-2:]) != (self.img_size, self.img_size)
                or x.shape[-3] != self.in_chans):
            raise ConfigError(
                f"images of shape {tuple(x.shape[1:])} do not match model.in_chans={self.in_chans}, "
                f"model.img_size={self.img_size}: make the data's image size and channels match the model"
            )
        return x


class IJEPA(JEPA):
    """I-JEPA on images [B, C, H, W]: a 2-D ViT, the paper's multi-block masks (one context block, several target
    blocks) and a smooth-L1 objective. Training options (lr, schedules, EMA, SIGReg, padding, compilation, ...) are
    jepa.module.JEPA's, listed by `jepa fit --model ijepa.IJEPA --model.help`.

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
        predictor_shared_context: a recipe change, off in the paper's recipe: the predictor holds the context once
            for all target blocks and the context stops attending to the mask tokens (jepa.vit.Predictor); fewer
            predictor tokens per image (docs/performance.md has its speed and probe A/B).
        view_weight: a recipe change, off in the paper's recipe (0): with several augmented views per image
            (data.views > 1) add this times LeJEPA's multi-view term (ijepa.views.ViewInvariance) to the I-JEPA loss,
            which itself is computed on the first view.
        view_proj_dim: width of the multi-view term's projection.
        view_sigreg_share: share of SIGReg in the multi-view term (LeJEPA's lambda).
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
        predictor_shared_context: bool = False,
        view_weight: float = 0.0,
        view_proj_dim: int = 64,
        view_sigreg_share: float = 0.05,
        **training,
    ) -> None:
        check_predictor_width(predictor_embed_dim, num_heads)
        if view_weight < 0 or not 0.0 <= view_sigreg_share <= 1.0:
            raise ConfigError(f"model.view_weight must be >= 0 and model.view_sigreg_share in [0, 1], got "
                              f"{view_weight} and {view_sigreg_share}")
        encoder = VisionTransformer(img_size, patch_size, in_chans, embed_dim, depth, num_heads, drop_path_rate=drop_path_rate)
        predictor = Predictor(encoder.grid, embed_dim, predictor_embed_dim, predictor_depth, num_heads,
                              shared_context=predictor_shared_context)
        sampler = mask_sampler if mask_sampler is not None else MultiBlockMaskSampler()
        super().__init__(encoder, predictor, sampler, ImageInput(img_size, in_chans), F.smooth_l1_loss, **training)
        self.view_weight = view_weight
        self.view_term = (ViewInvariance(embed_dim, view_proj_dim, view_sigreg_share, self.sigreg_slices)
                          if view_weight else None)
        # The sampler is rebuilt from the saved config.yaml, not pickled into checkpoints (weights_only loading).
        self.save_hyperparameters(ignore=["mask_sampler"])

    def jepa_loss(self, batch, masks):
        x, local = self.inputs(batch), local_views(batch)
        if x.dim() == 4 and local is None:
            if self.view_term is not None and self.training:  # validation images come one view each
                raise ConfigError(f"model.view_weight is {self.view_weight} but the training data gives one view per "
                                  "image: set data.views >= 2, or model.view_weight 0")
            return super().jepa_loss(x, masks)
        if self.view_term is None:
            raise ConfigError("the data gives several views per image (data.views, data.local_views) but "
                              "model.view_weight is 0: set model.view_weight > 0, or data.views 1 and local_views 0")
        if local is not None and (local.shape[-1] % self.encoder.patch_size or local.shape[-2] != local.shape[-1]):
            raise ConfigError(f"local views of {tuple(local.shape[-2:])} pixels: data.local_size must be a multiple of "
                              f"model.patch_size {self.encoder.patch_size}")
        if x.dim() == 4:  # one view and local views
            x = x[:, None]
        loss, full = super().jepa_loss(x[:, 0], masks)  # I-JEPA on the first view
        step = self.trainer.global_step if self._trainer is not None else 0
        generator = torch.Generator().manual_seed(key_seed(self.mask_seed, step, 0x7615))  # same on every rank
        term = self.view_term(self.encoder, x, generator, local)
        if self._trainer is not None and self.training:
            self.log("train/views", term)
        return loss + self.view_weight * term, full

    def configure_model(self) -> None:
        if self._device_mesh is not None and self.view_term is not None:  # its projector would stay unsharded
            raise ConfigError("model.view_weight is not supported under FSDP (ModelParallelStrategy) yet: train it "
                              "with the ddp strategy, or set model.view_weight 0")
        super().configure_model()
