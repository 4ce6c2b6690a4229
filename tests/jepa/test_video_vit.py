"""The shared ViT as a video encoder: Conv3d tubelets, 3-D sin-cos position embedding (official V-JEPA tables),
the encode() interface for clips and single images."""
from pathlib import Path

import pytest
import torch

from jepa.checkpoint import load_encoder
from jepa.errors import ConfigError
from jepa.pos_embed import sincos_3d
from jepa.vit import VisionTransformer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_3d_sincos_equals_the_official_v_jepa_tables():
    tables = torch.load(FIXTURES / "official_vjepa_sincos3d.pt", weights_only=True)
    assert len(tables) == 3
    for key, want in tables.items():
        dim, t, h, w, uniform = key.split("_")
        ours = sincos_3d(int(dim), int(t), int(h), int(w), uniform_power=uniform == "True")
        assert torch.allclose(ours, want, atol=1e-6), key


def _video(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    args = dict(img_size=8, patch_size=4, in_chans=3, embed_dim=24, depth=1, num_heads=2, num_frames=4, tubelet_size=2)
    return VisionTransformer(**{**args, **kw}).eval()


def test_tubelet_embedding_shapes_and_token_order():
    vit = _video()
    assert isinstance(vit.patch_embed.proj, torch.nn.Conv3d) and vit.patch_embed.proj.kernel_size == (2, 4, 4)
    clip = torch.randn(2, 3, 4, 8, 8)  # [B, C, T, H, W]
    with torch.no_grad():
        tokens = vit.patch_embed(clip)
        assert tokens.shape == (2, 2 * 2 * 2, 24) and vit(clip).shape == (2, 8, 24)
        # token (t=1, h=0, w=1) sees frames 2-3, rows 0-3, columns 4-7 only
        direct = torch.einsum("bcthw,dcthw->bd", clip[:, :, 2:4, 0:4, 4:8], vit.patch_embed.proj.weight)
        assert torch.allclose(tokens[:, 1 * 4 + 0 * 2 + 1], direct + vit.patch_embed.proj.bias, atol=1e-5)


def test_encode_interface_for_clips_and_single_images():
    vit = _video()
    frames = torch.randn(2, 4, 3, 8, 8)  # [B, T, C, H, W]
    with torch.no_grad():
        out = vit.encode(frames)
        assert out.shape == (2, 2, 4, 24)  # T' = T / tubelet
        still = vit.encode(frames[:, :1])  # one image, repeated to the clip length
        repeated = vit.encode(frames[:, :1].expand(-1, 4, -1, -1, -1))
        assert torch.equal(still, repeated)
    with pytest.raises(ConfigError, match="takes 4 frames"):
        vit.encode(frames[:, :3])
    with pytest.raises(ConfigError, match="does not divide num_frames"):
        _video(num_frames=3)


def test_video_encoder_round_trips_through_a_checkpoint(tmp_path):
    vit = _video(uniform_power=True)
    hp = dict(img_size=8, patch_size=4, in_chans=3, embed_dim=24, depth=1, num_heads=2, num_frames=4, tubelet_size=2,
              uniform_power=True)
    torch.save({"state_dict": {f"target_encoder.{k}": v for k, v in vit.state_dict().items()},
                "hyper_parameters": hp}, tmp_path / "v.ckpt")
    loaded, _ = load_encoder(tmp_path / "v.ckpt")
    clip = torch.randn(1, 3, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(clip), vit(clip))
