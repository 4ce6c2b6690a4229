"""A V-JEPA encoder pretrained on trajectory clips plugs into the world model like an I-JEPA one."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jepa_control.clips import TrajectoryClips

VIDEO = ["--model", "vjepa.VJEPA", "--model.img_size", "16", "--model.patch_size", "4", "--model.num_frames", "4",
         "--model.tubelet_size", "2", "--model.in_chans", "3", "--model.embed_dim", "32", "--model.depth", "1",
         "--model.num_heads", "2", "--model.predictor_embed_dim", "16", "--model.predictor_depth", "1"]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]


def test_clips_are_consecutive_frames_of_one_episode_every_stride():
    frames = torch.arange(2 * 9).view(2, 9, 1, 1, 1).expand(2, 9, 3, 3, 2).to(torch.uint8)  # value = e * 9 + t
    clips = TrajectoryClips(frames, num_frames=4, stride=2)
    assert len(clips) == 2 * 3  # starts 0, 2, 4 in each 9-frame episode
    clip, episode, _ = clips[4]
    assert episode == 1 and clip.shape == (4, 2, 3, 3)
    assert clip[:, 0, 0, 0].tolist() == [9 + 2, 9 + 3, 9 + 4, 9 + 5]


def test_a_video_encoder_pretrained_on_trajectory_clips_feeds_the_world_model(tiny_control):
    """jepa fit pretrains V-JEPA on the collected episodes as clips; the world model then encodes each frame as the
    encoder's interface documents (the frame repeated to a clip, the first time slot of its tokens) and trains."""
    from jepa.checkpoint import load_encoder
    from jepa.cli import main
    from jepa_control.encoding import FrozenEncoder

    path, _, _ = tiny_control
    code = main(["fit", *VIDEO, "--data", "jepa_control.clips.TrajectoryClipsDataModule", "--data.train_dir",
                 str(path / "train"), "--data.stride", "1", "--data.batch_size", "4", "--trainer.max_steps", "2",
                 "--trainer.default_root_dir", str(path / "video"), *QUIET])
    assert code == 0
    ckpt = next((path / "video").rglob("*.ckpt"))
    encoder, _ = load_encoder(str(ckpt), "target_encoder")
    assert encoder.is_video and encoder.num_frames == 4
    frozen = FrozenEncoder(encoder, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), pool_grid=2)
    frames = torch.randint(0, 256, (1, 3, 16, 16, 3), dtype=torch.uint8)
    latents = frozen(frames)
    x = (frames[0].permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25  # [T, C, H, W]
    clips = x[:, None].expand(-1, 4, -1, -1, -1)  # each frame held for the encoder's 4 frames
    tokens = encoder.encode(clips)[:, 0]  # [T, 16, D]: the first tubelet slot
    pooled = F.adaptive_avg_pool2d(tokens.transpose(1, 2).reshape(3, -1, 4, 4), 2).flatten(2).transpose(1, 2)
    assert torch.allclose(latents[0], F.layer_norm(pooled, pooled.shape[-1:]), atol=1e-5)
    code = main(["fit", "--model", "jepa_control.WorldModel",
                 "--model.frozen_encoder", "jepa_control.FrozenEncoder.from_checkpoint",
                 "--model.frozen_encoder.path", str(ckpt), "--model.frozen_encoder.pool_grid", "2",
                 "--model.embed_dim", "16", "--model.depth", "1", "--model.num_heads", "2",
                 "--model.rollout_steps", "2", "--data", "jepa_control.LatentTrajectoryDataModule",
                 "--data.train_dir", str(path / "train"), "--data.window", "3", "--data.batch_size", "8",
                 "--data.gate_min_r2", "0", "--data.cache_dir", str(path / "cache"), "--trainer.max_steps", "1",
                 "--trainer.default_root_dir", str(path / "video_wm"), *QUIET])
    assert code == 0 and next((path / "video_wm").rglob("*.ckpt")).is_file()
