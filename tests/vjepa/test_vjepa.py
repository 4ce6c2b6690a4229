"""The VJEPA module: a few training steps reduce the loss, masks are keyed, checkpoints round-trip."""
import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from jepa.checkpoint import load_encoder
from tests.conftest import tiny_trainer
from vjepa import VJEPA, MultiBlock3DMaskSampler

TINY = dict(img_size=16, patch_size=4, num_frames=4, tubelet_size=2, in_chans=1, embed_dim=32, depth=2, num_heads=2,
            predictor_embed_dim=16, predictor_depth=1, monitor_every=1)


def _clips(n=16, seed=0):
    """Bright squares moving right one pixel per frame: [N, T, C, H, W] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.zeros(n, 4, 1, 16, 16)
    for i in range(n):
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        for t in range(4):
            clips[i, t, 0, r : r + 5, c + t : c + t + 5] = 1.0
    return clips


def _model(seed=0):
    torch.manual_seed(seed)
    return VJEPA(**TINY, mask_sampler=MultiBlock3DMaskSampler(), lr=3e-3, start_lr=3e-3, warmup_fraction=0.0)


def test_predictor_has_one_zero_mask_token_per_configuration():
    model = _model()
    assert len(model.predictor.mask_tokens) == 2 and all(not t.detach().any() for t in model.predictor.mask_tokens)
    assert model.encoder.pos_embed.shape == (1, 2 * 4 * 4, 32)


def test_training_reduces_the_loss_and_checkpoints_round_trip(tmp_path):
    model = _model()
    data = DataLoader(TensorDataset(_clips()), batch_size=8)
    batch = next(iter(data))
    masks = model.masks_for(batch, step=0, rank=0)
    with torch.no_grad():
        before, _ = model.jepa_loss(batch, masks)
    trainer = tiny_trainer(tmp_path, max_steps=30)
    trainer.fit(model, data)
    with torch.no_grad():
        after, _ = model.jepa_loss(batch, masks)
    assert after < 0.7 * before
    ckpt = tmp_path / "v.ckpt"
    trainer.save_checkpoint(ckpt)
    encoder, hp = load_encoder(ckpt)
    assert hp["num_frames"] == 4 and encoder.is_video
    clip = _clips(2).transpose(1, 2)
    with torch.no_grad():
        assert torch.equal(encoder(clip), model.target_encoder.eval()(clip))
    restored = VJEPA.load_from_checkpoint(ckpt, mask_sampler=MultiBlock3DMaskSampler(), weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))


def test_masks_are_keyed_by_step_and_rank():
    model, batch = _model(), (_clips(4),)
    a, b = model.masks_for(batch, 3, 0), model.masks_for(batch, 3, 0)
    c = model.masks_for(batch, 3, 1)
    assert all(torch.equal(x.target, y.target) for x, y in zip(a, b))
    assert not all(torch.equal(x.target, y.target) for x, y in zip(a, c))


def test_cpu_recipe_trains_from_the_command_line(tmp_path, fmnist_root, capsys):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "fit", "--config", str(root / "configs/vjepa/moving_fmnist_cpu.yaml"),
         "--trainer.max_steps=2", "--data.train_clips=32", "--data.batch_size=8", f"--data.root={fmnist_root}",
         "--data.garment=36", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
         "--trainer.enable_progress_bar=false"],
        capture_output=True, text=True, timeout=300, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    encoder, hp = load_encoder(tmp_path / "checkpoints" / "last.ckpt")
    assert encoder.is_video and hp["num_frames"] == 8 and hp["in_chans"] == 1 and hp["data"] == {"garment": 36}
    # ... and its clip probe: attentive probes on both labels of moving Fashion-MNIST, beside random init
    run = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "probe", "--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), "--data",
         "moving_fmnist", f"--data_root={fmnist_root}", "--train_limit=40", "--test_limit=16",
         "--attentive.epochs=1", "--attentive.batch_size=8", f"--out={tmp_path / 'probe'}"],
        capture_output=True, text=True, timeout=300, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    probe = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert set(probe["rows"]) == {"jepa", "random init"} and probe["labels"] == ["class", "direction"]
    assert probe["rows"]["jepa"]["tokens"] == [4 * 64, 96]
    assert probe["clips"]["garment"] == 36  # the probe's clips have the pretraining clips' garments
    # a reference pretrained on other garments than the probe clips' is refused, naming both sides
    from jepa.cli import main as jepa

    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")
    assert jepa(["probe", "--ckpt", ckpt, "--data", "moving_fmnist", f"--data_root={fmnist_root}", "--garment=28",
                 "--train_limit=8", "--test_limit=8", f"--references={{other: {ckpt}}}", "--random_init=false",
                 f"--out={tmp_path / 'probe28'}"]) == 2
    assert "pretrained on 36-pixel garments" in capsys.readouterr().err
    assert not (tmp_path / "probe28").exists()


def test_moving_fmnist_shards_decode_as_clips(tmp_path, fmnist_root):
    from data.shard_datamodule import ClipShardDataModule
    from jepa.cli import main as jepa

    assert jepa(["shards", "write", "moving_fmnist", fmnist_root, "--split", "eval", "--count", "6", "--num_frames",
                 "8", "--garment", "36", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.loads((tmp_path / "index.json").read_text())["garment"] == 36
    dm = ClipShardDataModule(str(tmp_path), img_size=64, num_frames=8, frame_step=1, crop_scale=(1.0, 1.0),
                             mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=2, num_workers=0)
    dm.setup("fit")
    (clips, labels), _ = dm.strip(next(iter(dm.train_dataloader())))
    assert clips.shape == (2, 8, 3, 64, 64) and labels.shape == (2,)


def _direction_clips(n, seed):
    """4-frame clips of a square crossing one 4-px patch per frame, left to right (0) or right to left (1): both
    directions show the same frames, only their order differs."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.zeros(n, 4, 1, 16, 16, dtype=torch.uint8)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        r = int(torch.randint(0, 12, (1,), generator=g))
        for t in range(4):
            c = 4 * t if y[i] == 0 else 12 - 4 * t
            clips[i, t, 0, r : r + 4, c : c + 4] = 255
    return clips, y


def test_time_pooled_tokens_keep_time_slots_apart_and_every_probe_reports():
    from eval.clip_probe import ClipProbeData, clip_table, probe_clip_rows, time_pooled, time_slots
    from eval.linear_probe import LinearProbeConfig
    from eval.probe import KnnConfig, Row
    from jepa.vit import VisionTransformer

    tokens = torch.arange(2 * 3 * 4 * 5, dtype=torch.float).view(2, 3 * 4, 5)  # 3 time slots x 4 patches
    pooled = time_pooled(tokens, 3)
    assert pooled.shape == (2, 15)
    assert torch.equal(pooled[1, 5:10], tokens[1, 4:8].mean(0))  # slot 1 = the mean of its own 4 patches
    video = _model().target_encoder
    torch.manual_seed(0)
    image = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
    assert time_slots(video, 4) == 2 and time_slots(image, 4) == 4
    x, y = _direction_clips(200, 0)
    data = ClipProbeData("toy", x[:160], {"direction": y[:160]}, x[160:], {"direction": y[160:]}, (0.5,), (0.5,),
                         {"dataset": "toy"})
    results = probe_clip_rows([Row("video", video, {"i": 2}, 4)], data, None, LinearProbeConfig(max_iter=20),
                              KnnConfig(k=5), log=lambda *_: None, protocols=("avg", "avg+2x2"))
    assert set(results["video"]["direction"]) == {"linear", "knn", "linear/avg+2x2"}  # kNN on its protocols only
    assert results["video"]["direction"]["linear"]["features"] == 2 * 32
    assert results["video"]["direction"]["linear/avg+2x2"]["features"] == 2 * 5 * 32  # per slot: mean + 4 quadrants
    table = clip_table(results, ["direction"])
    assert "direction, linear | direction, knn | direction, linear/avg+2x2" in table
    assert "- linear/avg+2x2, knn/avg+2x2:" in table


def test_grid_time_pooling_keeps_where_a_token_sits_within_each_slot():
    from eval.clip_probe import probe_clip_rows, time_pooled
    from jepa.errors import ConfigError

    # two clips of 2 time slots x a 4x4 token grid, one active token per slot: at the same places except in slot 1,
    # where clip 0 has it top-left and clip 1 bottom-right
    tokens = torch.zeros(2, 2 * 16, 3)
    tokens[:, 5, 0] = 1.0
    tokens[0, 16 + 0, 1], tokens[1, 16 + 15, 1] = 1.0, 1.0
    avg, grid = time_pooled(tokens, 2, "avg"), time_pooled(tokens, 2, "avg+2x2")
    assert torch.equal(avg[0], avg[1])  # averaging over space loses where the token was
    assert grid.shape == (2, 2 * 5 * 3) and not torch.equal(grid[0], grid[1])
    slot1 = grid.view(2, 2, 15)[:, 1, 3:].view(2, 3, 4)[:, 1]  # slot 1: mean, then 4 quadrants per channel
    assert slot1[0].tolist() == [0.25, 0, 0, 0] and slot1[1].tolist() == [0, 0, 0, 0.25]
    with pytest.raises(ConfigError, match="unknown probe protocol 'grid'"):
        probe_clip_rows([], None, None, protocols=("grid",))


def test_clip_probes_see_frame_order_for_framewise_image_encoders():
    from eval.attentive_probe import AttentiveProbeConfig
    from eval.clip_probe import ClipProbeData, check_clip_compatible, clip_table, clip_tokens, probe_clip_rows
    from eval.probe import Row
    from jepa.errors import ConfigError
    from jepa.vit import VisionTransformer

    x, y = _direction_clips(400, 0)
    data = ClipProbeData("toy", x[:320], {"direction": y[:320]}, x[320:], {"direction": y[320:]}, (0.5,), (0.5,),
                         {"dataset": "toy"})
    video = _model().target_encoder
    torch.manual_seed(0)
    image = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
    for enc in (video, image):
        check_clip_compatible(enc, data, "test")
    assert clip_tokens(video, x[:2], (0.5,), (0.5,)).shape == (2, 2 * 16, 32)  # T / tubelet x 16 patches
    cfg = AttentiveProbeConfig(lrs=(1e-2,), epochs=60, batch_size=32, num_heads=2)
    results = probe_clip_rows([Row("frame-wise", image, {"i": 1}, 4)], data, cfg, log=lambda *_: None)
    assert results["frame-wise"]["tokens"] == [4 * 16, 32]
    assert results["frame-wise"]["direction"]["attentive"]["test_acc"] > 0.9  # frame order reaches the probe
    assert "| frame-wise |" in clip_table(results, ["direction"])
    # without the frame embedding a clip and the same clip played backwards give the same multiset of tokens, which
    # an attentive probe (permutation invariant) cannot tell apart; with it they differ
    clip, backwards = x[:1], x[:1].flip(1)
    def rows(t):
        return sorted(map(tuple, t[0].round(decimals=4).tolist()))
    blind = [clip_tokens(image, c, (0.5,), (0.5,), frame_positions=False) for c in (clip, backwards)]
    seen = [clip_tokens(image, c, (0.5,), (0.5,)) for c in (clip, backwards)]
    assert rows(blind[0]) == rows(blind[1]) and rows(seen[0]) != rows(seen[1])
    with pytest.raises(ConfigError, match="takes 4 frames"):
        check_clip_compatible(video, ClipProbeData("short", x[:2, :2], {}, x[:2, :2], {}, (0.5,), (0.5,), {}), "v")
    # references pretrained on other garments than the probe clips' fail; exports (no record) and a match pass
    garments = ClipProbeData("g28", x[:2], {}, x[:2], {}, (0.5,), (0.5,), {"garment": 28})
    check_clip_compatible(video, garments, "v", None)
    check_clip_compatible(video, garments, "v", 28)
    with pytest.raises(ConfigError, match="pretrained on 40-pixel garments .* 28-pixel"):
        check_clip_compatible(video, garments, "v", 40)
