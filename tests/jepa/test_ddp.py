"""DDP and FSDP2 equivalence: one 2-process step on 2 x B samples == one single-process step on the mean of the two ranks'
losses with the same samples and masks."""
from pathlib import Path

import pytest
import torch

from ijepa import IJEPA
from jepa.checkpoint import load_checkpoint
from tests.conftest import TinyData, tiny_model, tiny_trainer, tiny_vjepa
from tests.helpers.two_ranks import run_two_ranks
from vjepa import VJEPA

ROOT = Path(__file__).resolve().parents[2]


class TwoRanksInOneMixin:
    """Single process: the batch holds rank 0's samples then rank 1's; each half gets that rank's masks."""

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        half = x.shape[0] // 2
        losses = []
        for rank in (0, 1):
            part = (x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half], idx[rank * half:(rank + 1) * half])
            losses.append(self.jepa_loss(part, self.masks_for(part, self.micro_step(batch_idx), rank))[0])
        return (losses[0] + losses[1]) / 2


class TwoRanksInOne(TwoRanksInOneMixin, IJEPA):
    pass


class TwoRanksInOneVideo(TwoRanksInOneMixin, VJEPA):
    pass


FSDP_ON_CPU = pytest.mark.skipif(not hasattr(torch.cpu.Stream, "record_event"),
                                 reason="FSDP2 on CPU needs torch >= 2.7 (CPU stream events, pytorch/pytorch#145935)")


@pytest.mark.parametrize("family,strategy", [("ijepa", "ddp"), ("vjepa", "ddp"),
                                             pytest.param("ijepa", "fsdp", marks=FSDP_ON_CPU),
                                             pytest.param("vjepa", "fsdp", marks=FSDP_ON_CPU)])
def test_data_parallel_step_equals_single_process_mean(tmp_path, family, strategy):
    """DDP, and FSDP2 with its sharded EMA update, give the weights of one process on both ranks' samples."""
    proc = run_two_ranks("ddp_step.py", str(tmp_path), family, strategy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    ddp = torch.load(tmp_path / "params.pt", weights_only=True)

    assert not set(r0["indices"].tolist()) & set(r1["indices"].tolist()), "ranks saw the same samples"
    assert not torch.equal(r0["targets"], r1["targets"]), "ranks drew the same masks"

    # Single process: the same 2 x B samples in one batch (rank 0's, then rank 1's), same masks, mean loss.
    order = torch.cat([r0["indices"], r1["indices"]]).tolist()
    video = family == "vjepa"
    data = TinyData(n=16, batch_size=len(order), clips=video)
    data.dataset = torch.utils.data.Subset(data.dataset, order)
    build = (lambda **kw: tiny_vjepa(cls=TwoRanksInOneVideo, **kw)) if video else (lambda **kw: tiny_model(cls=TwoRanksInOne, **kw))
    model = build(seed=0, ema_momentum=(0.9, 0.95))
    tiny_trainer(tmp_path / "single", max_steps=1).fit(model, datamodule=data)

    single = model.state_dict()
    assert set(single) == set(ddp)
    for key, value in ddp.items():
        assert torch.allclose(value, single[key], atol=1e-6, rtol=0), key
    start = (tiny_vjepa if video else tiny_model)(seed=0).state_dict()
    changed = [k for k in ddp if k.startswith("target_encoder.") and not torch.equal(ddp[k], start[k])]
    assert changed, "the EMA did not move the target encoder"
    if strategy == "fsdp":  # the checkpoint holds the gathered weights, in our ordinary single-file format
        saved = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
        assert set(saved) == set(ddp) and all(torch.equal(saved[k], ddp[k]) for k in ddp)

