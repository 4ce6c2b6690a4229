import contextlib

import lightning as L
import pytest
import torch

from jepa.checkpoint import load_encoder
from tests.conftest import TinyData, tiny_model, tiny_trainer, tiny_vjepa


class Track(L.Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        opt = trainer.optimizers[0]
        self.rows.append((trainer.global_step, opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"],
                          pl_module.momentum_at(trainer.global_step), float(outputs["loss"]), batch[2].tolist()))


def test_loss_decreases_on_tiny_data(tmp_path):
    model = tiny_model(lr=3e-3, start_lr=3e-3, warmup_fraction=0.0, ema_momentum=(0.9, 0.9))
    track = Track()
    trainer = tiny_trainer(tmp_path, max_steps=40, callbacks=[track])
    trainer.fit(model, datamodule=TinyData(n=16, batch_size=16))
    losses = [r[4] for r in track.rows]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_padded_token_counts_train_as_the_unpadded_ones(tmp_path):
    """model.pad_tokens (I-JEPA and V-JEPA): every step's loss as without padding, with the encoder seeing padded
    token counts."""
    for make, clips in ((tiny_model, False), (tiny_vjepa, True)):
        losses, counts = {}, {}
        for pad in (0, 8):
            model, track = make(seed=0, pad_tokens=pad), Track()
            seen = counts.setdefault(pad, set())
            model.encoder.register_forward_hook(lambda m, args, out, seen=seen: seen.add(out.shape[1]))
            tiny_trainer(tmp_path / f"{clips}{pad}", max_steps=3, callbacks=[track]).fit(
                model, datamodule=TinyData(n=16, batch_size=8, clips=clips))
            losses[pad] = [r[4] for r in track.rows]
        assert all(c % 8 == 0 for c in counts[8]) and not all(c % 8 == 0 for c in counts[0]), counts
        torch.testing.assert_close(losses[8], losses[0], rtol=1e-5, atol=1e-6)


def test_torch_compile_option_compiles_one_block_graph_per_shape_with_padding(tmp_path, monkeypatch):
    """model.torch_compile compiles every transformer block; with model.pad_tokens covering the whole 4x4 grid the
    blocks share three graphs over all steps (context encoder, target encoder under no_grad, predictor), while without
    padding the changing mask sizes add graphs. The eager backend stands in for inductor, whose C++ builds take
    minutes here; the graphs and their guards are dynamo's either way."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    compiled = []
    compile_in_place = torch.nn.Module.compile

    def eager_compile(module, **kwargs):
        compiled.append(type(module).__name__)
        compile_in_place(module, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    graphs, sizes = {}, {}
    try:
        for pad in (16, 0):
            torch._dynamo.reset()
            counters.clear()
            model, track = tiny_model(pad_tokens=pad, torch_compile=True), Track()
            seen = sizes.setdefault(pad, set())
            model.encoder.register_forward_hook(lambda m, args, out, seen=seen: seen.add(out.shape[1]))
            trainer = tiny_trainer(tmp_path / str(pad), max_steps=6, callbacks=[track])
            with pytest.warns(UserWarning, match="set model.pad_tokens") if not pad else contextlib.nullcontext():
                trainer.fit(model, datamodule=TinyData(n=48, batch_size=8))
            graphs[pad] = counters["stats"]["unique_graphs"]
            assert len(track.rows) == 6 and all(torch.isfinite(torch.tensor(r[4])) for r in track.rows)
    finally:
        torch._dynamo.reset()
    assert compiled == ["Block"] * (2 * (2 + 2 + 1))  # encoder, target encoder and predictor blocks, twice
    assert sizes[16] == {16} and len(sizes[0]) > 1, sizes  # without padding the context size changed
    assert graphs[16] == 3 and graphs[0] > 3, graphs
    assert "_orig_mod" not in "".join(model.state_dict())  # checkpoints keep the plain parameter names


def test_target_encoder_gets_ema_not_gradients(tmp_path):
    model = tiny_model(ema_momentum=(0.5, 0.5))
    before = [p.clone() for p in model.target_encoder.parameters()]
    trainer = tiny_trainer(tmp_path, max_steps=1)
    online_before = [p.clone() for p in model.encoder.parameters()]
    trainer.fit(model, datamodule=TinyData(n=8, batch_size=8))
    for b, ob, t, o in zip(before, online_before, model.target_encoder.parameters(), model.encoder.parameters()):
        assert t.grad is None and not t.requires_grad
        assert torch.allclose(t, 0.5 * b + 0.5 * o, atol=1e-6)


def test_resume_continues_schedules(tmp_path):
    """8 steps straight vs cut at step 4, saved, resumed to 8 from a differently initialised model: the same
    LR / weight-decay / EMA-momentum trajectory, and the first step after resume sees the same weights (equal loss).
    Exact data position inside an epoch is not covered here: Lightning restarts a non-resumable loader's epoch."""
    data = dict(n=32, batch_size=8)
    straight, track_a = tiny_model(seed=1), Track()
    tiny_trainer(tmp_path / "a", max_steps=8, callbacks=[track_a]).fit(straight, datamodule=TinyData(**data))

    class StopAt(L.Callback):  # the run is cut at step 4 of 8, as a kill would
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 4:
                trainer.should_stop = True

    first, track_b = tiny_model(seed=1), Track()
    t1 = tiny_trainer(tmp_path / "b", max_steps=8, callbacks=[track_b, StopAt()])
    t1.fit(first, datamodule=TinyData(**data))
    assert t1.global_step == 4
    ckpt = tmp_path / "b" / "half.ckpt"
    t1.save_checkpoint(ckpt)

    resumed = tiny_model(seed=99)  # different init: everything must come from the checkpoint
    t2 = tiny_trainer(tmp_path / "c", max_steps=8, callbacks=[track_b])
    t2.fit(resumed, datamodule=TinyData(**data), ckpt_path=str(ckpt))

    assert [r[0] for r in track_b.rows] == [r[0] for r in track_a.rows] == list(range(1, 9))
    for a, b in zip(track_a.rows, track_b.rows):
        assert a[1:4] == b[1:4], (a, b)
    assert track_a.rows[4][4] == track_b.rows[4][4] and track_a.rows[4][5] == track_b.rows[4][5]
    first_row, last_row = track_a.rows[0], track_a.rows[-1]
    assert last_row[1] < first_row[1] and last_row[2] > first_row[2] and last_row[3] == 1.0  # schedules moved

    # the saved checkpoint loads safely as a frozen encoder, every key accounted for
    encoder, hparams = load_encoder(ckpt)
    assert hparams["embed_dim"] == 32
    assert torch.equal(encoder.blocks[0].attn.qkv.weight, first.target_encoder.blocks[0].attn.qkv.weight)
