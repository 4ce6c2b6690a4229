"""The supervised reference: the same ViT trained end to end with labels on the same data and budget, so probe
tables can show how far a frozen self-supervised encoder is from a supervised one.

    jepa fit --config configs/supervised/fmnist_cpu.yaml

The checkpoint keeps the encoder under `encoder.` with the ViT's hyperparameters, so `jepa probe --references
'{supervised: <ckpt>}'` probes its frozen encoder under exactly the probes of the JEPA rows.
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from jepa.errors import ConfigError
from jepa.optim import decay_groups
from jepa.schedules import JEPASchedule
from jepa.vit import VisionTransformer


class SupervisedViT(L.LightningModule):
    """ViT encoder -> average of the patch tokens -> linear head, cross-entropy on labelled (image, label, ...) batches.

    Args:
        img_size, patch_size, in_chans, embed_dim, depth, num_heads: the encoder, as in ijepa.IJEPA.
        num_classes: classes of the labels.
        lr: peak learning rate after linear warmup; cosine to final_lr.
        final_lr: learning rate at the last step.
        warmup_fraction: fraction of the optimizer steps spent in warmup.
        weight_decay: AdamW weight decay (not on biases or 1-D parameters).
        label_smoothing: cross-entropy label smoothing.
        drop_path_rate: stochastic depth of the encoder.
    """

    def __init__(self, img_size: int = 28, patch_size: int = 4, in_chans: int = 1, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, num_classes: int = 10, lr: float = 1e-3, final_lr: float = 1e-6,
                 warmup_fraction: float = 0.1, weight_decay: float = 0.05, label_smoothing: float = 0.1,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2, got {num_classes}")
        self.save_hyperparameters()
        self.encoder = VisionTransformer(img_size, patch_size, in_chans, embed_dim, depth, num_heads,
                                         drop_path_rate=drop_path_rate)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))

    def training_step(self, batch, batch_idx: int):
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean())
        return loss

    def validation_step(self, batch, batch_idx: int):
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(decay_groups(self.parameters()), lr=hp.lr, weight_decay=hp.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        schedule = JEPASchedule(optimizer, total_steps=total, warmup_steps=int(round(hp.warmup_fraction * total)),
                                start_lr=0.0, lr=hp.lr, final_lr=hp.final_lr, weight_decay=hp.weight_decay,
                                final_weight_decay=hp.weight_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}
