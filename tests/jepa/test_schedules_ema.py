import math

import torch

from jepa.ema import ema_update
from jepa.schedules import JEPASchedule, cosine, linear, warmup_cosine
from tests.conftest import TinyData, tiny_model, tiny_trainer


def test_ema_math():
    torch.manual_seed(0)
    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for b, t, o in zip(before, target.parameters(), online.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-7)
    ema_update(target, online, 1.0)  # momentum 1 freezes the target
    ema_update(target, online, 0.0)  # momentum 0 copies the online weights
    for t, o in zip(target.parameters(), online.parameters()):
        assert torch.equal(t, o)


def test_schedule_values():
    assert warmup_cosine(0, 100, 10, 2e-4, 1e-3, 1e-6) == 2e-4
    assert math.isclose(warmup_cosine(5, 100, 10, 2e-4, 1e-3, 1e-6), 6e-4)
    assert math.isclose(warmup_cosine(10, 100, 10, 2e-4, 1e-3, 1e-6), 1e-3)
    assert math.isclose(warmup_cosine(100, 100, 10, 2e-4, 1e-3, 1e-6), 1e-6)
    assert math.isclose(warmup_cosine(55, 100, 10, 2e-4, 1e-3, 1e-6), 1e-6 + (1e-3 - 1e-6) * 0.5)
    assert cosine(0, 100, 0.04, 0.4) == 0.04 and math.isclose(cosine(100, 100, 0.04, 0.4), 0.4)
    assert math.isclose(linear(50, 100, 0.996, 1.0), 0.998)


def test_no_weight_decay_on_biases_and_1d():
    model = tiny_model()
    decay, no_decay = model.param_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim > 1 for p in decay["params"])
    assert all(p.ndim <= 1 for p in no_decay["params"])
    assert any(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert not any("target_encoder" in names[id(p)] for p in decay["params"] + no_decay["params"])
    opt = torch.optim.AdamW([decay, no_decay], lr=1.0)
    sched = JEPASchedule(opt, 10, 2, 0.1, 1.0, 0.0, 0.04, 0.4)
    for _ in range(5):
        sched.step()
    assert math.isclose(opt.param_groups[0]["weight_decay"], cosine(5, 10, 0.04, 0.4))
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_schedules_count_optimizer_steps_with_accumulation(tmp_path):
    """8 micro-batches with accumulate_grad_batches=2 are 4 optimizer steps: LR, WD and EMA move 4 times."""
    model = tiny_model(lr=1e-3, start_lr=1e-4, warmup_fraction=0.5)
    seen = []

    import lightning as L

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((batch_idx, trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))

    trainer = tiny_trainer(tmp_path, max_steps=4, accumulate_grad_batches=2, callbacks=[Watch()])
    trainer.fit(model, datamodule=TinyData(n=64, batch_size=4))
    assert trainer.global_step == 4
    assert model.total_steps == 4
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == 4
    lrs = [lr for _, _, lr in seen]
    assert len(seen) == 8
    assert lrs[0] == lrs[1] and lrs[2] == lrs[3] and lrs[0] != lrs[2], "LR must change once per optimizer step"
    assert math.isclose(lrs[2], warmup_cosine(1, 4, 2, 1e-4, 1e-3, 1e-6))
    # masks differ between the two micro-batches of one optimizer step
    batch = (torch.rand(4, 1, 16, 16),)
    a, b = model.masks_for(batch, 0 * 2 + 0, 0), model.masks_for(batch, 0 * 2 + 1, 0)
    assert not torch.equal(a.targets, b.targets)
