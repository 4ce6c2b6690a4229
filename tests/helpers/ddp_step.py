"""One I-JEPA or V-JEPA data-parallel step on 2 gloo CPU processes (run as a script: Lightning re-executes it for
rank 1), with DDP or with FSDP2 (Lightning's ModelParallelStrategy + the module's fully_shard).
Usage: ddp_step.py OUT [ijepa|vjepa] [ddp|fsdp]

Writes <out>/rank<r>.pt with the sample indices and masks that rank used, and (rank 0) <out>/params.pt with the
encoder, predictor and target-encoder weights after the step.
"""
import os
import sys

import torch

torch.set_num_threads(1)  # two processes on two cores (docs/design.md)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository

import lightning as L  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from tests.conftest import TinyData, tiny_model, tiny_vjepa  # noqa: E402


class Record(L.Callback):
    def __init__(self, out):
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        masks = pl_module.masks_for(batch, pl_module.micro_step(batch_idx), pl_module.global_rank)
        if isinstance(masks, list):  # V-JEPA: one (context, target) pair per mask configuration
            context, targets = torch.cat([m.context for m in masks], 1), torch.cat([m.target for m in masks], 1)
        else:
            context, targets = masks.context, masks.targets
        torch.save({"indices": batch[2].clone(), "context": context, "targets": targets},
                   os.path.join(self.out, f"rank{trainer.global_rank}.pt"))


def main(out: str, family: str = "ijepa", strategy: str = "ddp") -> None:
    build = tiny_vjepa if family == "vjepa" else tiny_model
    model = build(seed=0, ema_momentum=(0.9, 0.95))
    callbacks = [Record(out)]
    if strategy == "fsdp":  # plus a checkpoint: one full file gathered on rank 0, written by our atomic IO
        from lightning.pytorch.strategies import ModelParallelStrategy

        from jepa.periodic_checkpoint import PeriodicCheckpoint

        strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, save_distributed_checkpoint=False)
        callbacks.append(PeriodicCheckpoint(dirpath=os.path.join(out, "checkpoints"), every_n_steps=1))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=1, precision="32-true",
                        logger=False, enable_checkpointing=len(callbacks) > 1, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, default_root_dir=out)
    trainer.fit(model, datamodule=TinyData(n=16, batch_size=4, shuffle=False, clips=family == "vjepa"))
    state = model.state_dict()
    if any(isinstance(v, DTensor) for v in state.values()):  # FSDP: every rank takes part in gathering the shards
        for net in (model.encoder, model.target_encoder):
            assert isinstance(net.blocks[0].attn.qkv.weight, DTensor), "an encoder was not sharded"
        state = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}
    if trainer.is_global_zero:
        torch.save({k: v.detach().clone() for k, v in state.items()}, os.path.join(out, "params.pt"))


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[2:4])
