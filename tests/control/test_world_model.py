"""The action-conditioned world model: block-causal attention, token folding, losses, motion input."""
from __future__ import annotations

import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.predictor import ActionConditionedPredictor, block_causal_mask
from jepa_control.two_rooms import TwoRoomsConfig

SMALL = TwoRoomsConfig(img_size=16)


def test_block_causal_mask_frame_t_never_sees_t_plus_1():
    torch.manual_seed(0)
    model = ActionConditionedPredictor(token_dim=8, num_tokens=3, action_dim=2, embed_dim=16, depth=2, num_heads=2,
                                       max_frames=5).eval()
    z, a = torch.randn(2, 5, 3, 8), torch.randn(2, 5, 2)
    out = model(z, a)
    z2, a2 = z.clone(), a.clone()
    z2[:, 3:] += 5.0
    a2[:, 3:] -= 3.0
    out2 = model(z2, a2)
    assert torch.allclose(out[:, :3], out2[:, :3], atol=1e-6)  # frames 0..2 unaffected by frames 3, 4
    assert not torch.allclose(out[:, 3:], out2[:, 3:])
    mask = block_causal_mask(3, 2)
    assert mask[1, 2] == 0 and mask[2, 1] == 1 and mask[3, 2] == 1  # token 1 (frame 0) cannot see token 2 (frame 1)
    assert torch.equal(model(z, a, last_only=True), out[:, -1:])  # what a rollout step computes


def test_fold_concatenates_each_block_of_the_finer_grid_into_one_token():
    from jepa.vit import VisionTransformer
    from jepa_control.encoding import FrozenEncoder

    torch.manual_seed(0)
    encoder = VisionTransformer(16, 2, 3, 8, 1, 2)  # an 8 x 8 grid of 8-D tokens
    frames = torch.randint(0, 256, (1, 2, 16, 16, 3), dtype=torch.uint8)
    mean, std = [0.5] * 3, [0.25] * 3
    fine = FrozenEncoder(encoder, mean, std, pool_grid=4)(frames)  # [1, 2, 16, 8], row-major 4 x 4
    folded = FrozenEncoder(encoder, mean, std, pool_grid=2, fold=2)
    out = folded(frames)
    assert out.shape == (1, 2, 4, 32) and folded.dim == 32 and folded.num_tokens == 4
    for row, col in ((0, 0), (0, 1), (1, 0), (1, 1)):  # token (row, col) = its 2 x 2 block of fine tokens
        block = [fine[:, :, (2 * row + i) * 4 + 2 * col + j] for i in (0, 1) for j in (0, 1)]
        assert torch.equal(out[:, :, row * 2 + col], torch.cat(block, -1))
    with pytest.raises(ConfigError, match="pool_grid 3 x fold 2 must divide the encoder's 8x8 grid"):
        FrozenEncoder(encoder, mean, std, pool_grid=3, fold=2)


def test_frozen_encoder_normalises_frames_as_its_checkpoint_recorded(tmp_path):
    """FrozenEncoder.from_checkpoint takes the normalisation the encoder was pretrained with from its file; mean and
    std given override it; a file that records none, with none given, is refused in one line."""
    from jepa.export import export_encoder
    from jepa.vit import VisionTransformer
    from jepa_control.encoding import FrozenEncoder

    encoder = VisionTransformer(16, 4, 3, 8, 1, 2)
    export_encoder(encoder, tmp_path / "recorded", {}, None, [0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    export_encoder(encoder, tmp_path / "bare", {}, None)
    frozen = FrozenEncoder.from_checkpoint(str(tmp_path / "recorded"), pool_grid=2)
    assert torch.allclose(frozen.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(frozen.std.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    given = FrozenEncoder.from_checkpoint(str(tmp_path / "recorded"), pool_grid=2, mean=[0.5] * 3, std=[0.25] * 3)
    assert given.mean.flatten().tolist() == [0.5] * 3 and given.std.flatten().tolist() == [0.25] * 3
    with pytest.raises(ConfigError, match="records no input normalisation: give the frozen encoder's mean and std"):
        FrozenEncoder.from_checkpoint(str(tmp_path / "bare"), pool_grid=2)


def test_world_model_learns_a_linear_system():
    g = torch.Generator().manual_seed(0)
    d = 6
    A = torch.linalg.qr(torch.randn(d, d, generator=g))[0] * 0.9
    B = torch.randn(2, d, generator=g) * 0.5

    def batch(n=64, t=4):
        z = [torch.randn(n, d, generator=g)]
        a = torch.rand(n, t, 2, generator=g) * 2 - 1
        for i in range(t - 1):
            z.append(z[-1] @ A + a[:, i] @ B)
        return torch.stack(z, 1)[:, :, None], a

    torch.manual_seed(0)
    model = ActionConditionedPredictor(d, 1, 2, embed_dim=64, depth=2, num_heads=4, max_frames=4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(400):
        z, a = batch()
        loss = (model(z[:, :-1], a[:, :-1]) - z[:, 1:]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z, a = batch(256)
    with torch.no_grad():
        pred = model.rollout(z[:, :1], a[:, :0], a[:, :3], context=4)
    err = (pred - z[:, 1:]).abs().mean()
    copy_last = (z[:, :1] - z[:, 1:]).abs().mean()
    assert err < 0.25 * copy_last, (float(err), float(copy_last))


def test_motion_input_lets_the_predictor_see_changes_a_thousandth_of_the_latents_scale():
    """Constant velocity at 1e-3 of the latents' scale: with `motion` (change in, change out, in units of the data's
    change std) the predictor extrapolates it; the same predictor on the raw latents does not get far below
    "nothing moves"."""
    from jepa_control.latent_stats import change_std

    g = torch.Generator().manual_seed(0)

    def batch(n=128, t=4):
        base, v = torch.randn(n, 1, 2, 8, generator=g), torch.randn(n, 1, 2, 8, generator=g) * 1e-3
        return base + torch.arange(t).view(1, t, 1, 1) * v, torch.zeros(n, t - 1, 2)

    errors = {}
    for motion in (False, True):
        torch.manual_seed(0)
        model = ActionConditionedPredictor(8, 2, 2, embed_dim=32, depth=1, num_heads=2, max_frames=2, motion=motion)
        if motion:
            model.change_scale.copy_(change_std(batch(512)[0]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(300):
            z, a = batch()
            loss = (model(z[:, :2], a[:, :2]) - z[:, 1:3]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        z, a = batch(512)
        with torch.no_grad():
            pred = model.rollout(z[:, :2], a[:, :1], a[:, 1:3], context=2)
        errors[motion] = float((pred - z[:, 2:]).abs().mean() / (z[:, 1:2] - z[:, 2:]).abs().mean())
    assert errors[True] < 0.2 and errors[False] > 0.5, errors


def test_mse_loss_pays_for_the_expected_move_where_l1_settles_on_nothing_moves(tmp_path):
    """A latent that moves by +1 in 40 % of the samples, unpredictably: L1's optimum is the median change (0),
    MSE's the mean (0.4); the option picks the loss, and an unknown name is refused."""
    from jepa_control.world_model import LATENT_LOSSES

    torch.manual_seed(0)
    moved = {}
    for name in ("l1", "mse"):
        model = ActionConditionedPredictor(1, 1, 2, embed_dim=16, depth=1, num_heads=2, max_frames=1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            z = torch.zeros(256, 1, 1, 1)
            target = (torch.rand(256, 1, 1, 1) < 0.4).float()
            loss = LATENT_LOSSES[name](model(z, torch.zeros(256, 1, 2)), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            moved[name] = float(model(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 2)))
    assert abs(moved["l1"]) < 0.1 and abs(moved["mse"] - 0.4) < 0.1, moved
    from jepa_control import WorldModel

    with pytest.raises(ConfigError, match="model.loss = 'huber': choose one of"):
        WorldModel(None, loss="huber")


def test_whitening_keeps_the_top_directions_when_asked():
    """whitening(dims=k): the k directions of most variance, each of unit variance, and the unwhitener its inverse
    on them; the predictor refuses whiten_dims without whiten."""
    from jepa_control.latent_stats import whitening

    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    scales = torch.tensor([5.0, 3.0, 1.0, 0.1, 0.1, 0.1])
    tokens = (torch.randn(4000, 6, generator=g) * scales) @ basis.T + 2.0
    mean, whitener, unwhitener = whitening(tokens.view(40, 100, 1, 6), dims=2)
    assert whitener.shape == (6, 2) and unwhitener.shape == (2, 6)
    assert torch.allclose(torch.cov(((tokens - mean) @ whitener).T), torch.eye(2), atol=0.05)
    span, _ = torch.linalg.qr(whitener)
    assert torch.allclose((span.T @ basis[:, :2]).norm(dim=0), torch.ones(2), atol=0.01)  # the two largest
    assert torch.allclose(unwhitener @ whitener, torch.eye(2), atol=1e-4)
    with pytest.raises(ConfigError, match="whiten_dims"):
        ActionConditionedPredictor(6, 1, 2, embed_dim=8, depth=1, num_heads=2, whiten=False, whiten_dims=2)
