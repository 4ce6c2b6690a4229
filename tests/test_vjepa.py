"""The VJEPA module: a few training steps reduce the loss, masks are keyed, checkpoints round-trip."""
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


def test_cpu_recipe_trains_from_the_command_line(tmp_path, fmnist_root):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "fit", "--config", str(root / "configs/vjepa/moving_fmnist_cpu.yaml"),
         "--trainer.max_steps=2", "--data.train_clips=32", "--data.batch_size=8", f"--data.root={fmnist_root}",
         f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.enable_progress_bar=false"],
        capture_output=True, text=True, timeout=300, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    encoder, hp = load_encoder(tmp_path / "checkpoints" / "last.ckpt")
    assert encoder.is_video and hp["num_frames"] == 8 and hp["in_chans"] == 1


def test_moving_fmnist_shards_decode_as_clips(tmp_path, fmnist_root):
    from data.shard_datamodule import ClipShardDataModule
    from jepa.cli import main as jepa

    assert jepa(["shards", "write", "moving_fmnist", fmnist_root, "--split", "eval", "--count", "6", "--num_frames",
                 "8", "--out", str(tmp_path), "--quiet"]) == 0
    dm = ClipShardDataModule(str(tmp_path), img_size=64, num_frames=8, frame_step=1, crop_scale=(1.0, 1.0),
                             mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=2, num_workers=0)
    dm.setup("fit")
    (clips, labels), _ = dm.strip(next(iter(dm.train_dataloader())))
    assert clips.shape == (2, 8, 3, 64, 64) and labels.shape == (2,)
