"""3 epochs of a tiny I-JEPA on 2 gloo CPU processes x 2 dataloader workers reading shards (run as a script:
Lightning re-executes it for rank 1). Usage: ddp_shards.py URLS OUT.

Writes OUT/rank<r>.pt with the ids and stream passes of every sample that rank trained on, and OUT/last.ckpt.
"""
import os
import sys

import torch

torch.set_num_threads(1)  # two processes on two cores (docs/design.md)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository

import lightning as L  # noqa: E402

from data.shard_datamodule import ImageShardDataModule  # noqa: E402
from tests.conftest import tiny_model  # noqa: E402
from tests.helpers.shard_helpers import image_data  # noqa: E402


class Recording(ImageShardDataModule):
    passes, labels = [], []

    def on_before_batch_transfer(self, batch, dataloader_idx):
        if self.trainer.training:
            self.passes.append(batch[-1][:, 1].clone())  # each sample's stream pass
            self.labels.append(batch[1].clone())  # its id
        return super().on_before_batch_transfer(batch, dataloader_idx)


def main(urls: str, out: str) -> None:
    dm = image_data(urls, num_workers=2, epoch_samples=64, cls=Recording)  # 64 // (2 x 4) = 8 steps per rank
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=3, precision="32-true",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out)
    trainer.fit(tiny_model(seed=0), datamodule=dm)
    record = {"ids": torch.cat(dm.labels).tolist(), "passes": torch.cat(dm.passes).tolist()}
    torch.save(record, os.path.join(out, f"rank{trainer.global_rank}.pt"))
    trainer.save_checkpoint(os.path.join(out, "last.ckpt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
