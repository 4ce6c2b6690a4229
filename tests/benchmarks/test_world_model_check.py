"""The world-model check: an untrained predictor (its output layer starts at zero) scores exactly "nothing moves", a
trained one does not; the action read-out finds aligned actions and not shifted ones."""
import torch


def test_an_untrained_predictor_scores_exactly_no_change_and_a_trained_one_differs(tiny_control):
    from benchmarks.world_model_check import check
    from jepa_control.collect import read_trajectories
    from jepa_control.world_model import WorldModel
    from tests.conftest import tiny_frozen_encoder

    path, trained, _ = tiny_control
    train, val = read_trajectories(path / "train"), read_trajectories(path / "val")
    untrained = WorldModel(tiny_frozen_encoder(path), embed_dim=32, depth=1, num_heads=2, context=2).eval()
    fresh = check(untrained, train, val, episodes=12)
    assert fresh["one_step_mse"] == fresh["no_change_mse"] > 0 and fresh["one_step_vs_no_change"] == 1.0
    after = check(trained.eval(), train, val, episodes=12)
    assert after["one_step_mse"] != after["no_change_mse"]
    assert after["no_change_mse"] == fresh["no_change_mse"]  # the same encoder, frames and steps
    assert -1.0 < after["position_r2"] <= 1.0 and -1.0 < after["action_r2"] <= 1.0
    # at frameskip 2 a model step is two env steps: "nothing moves" is measured between frames 2 apart
    skip = WorldModel(tiny_frozen_encoder(path), action_dim=4, embed_dim=32, depth=1, num_heads=2, context=2,
                      frameskip=2).eval()
    at2 = check(skip, train, val, episodes=12)
    latents = skip.encode(val["frames"][:12])[:, ::2]  # 7 frames: 0, 2, 4, 6; context 2 predicts 4 and 6
    expected = sum((latents[:, t] - latents[:, t + 1]).pow(2).mean() for t in (1, 2)) / 2
    assert at2["frameskip"] == 2 and at2["one_step_vs_no_change"] == 1.0
    assert abs(at2["no_change_mse"] - float(expected)) < 1e-6 * float(expected)


def test_the_action_read_out_finds_aligned_actions_and_not_shifted_ones():
    from benchmarks.world_model_check import action_r2

    g = torch.Generator().manual_seed(0)

    def walk(n: int) -> dict:
        actions = torch.rand(n, 20, 2, generator=g) * 2 - 1
        start = torch.rand(n, 1, 2, generator=g)
        return {"actions": actions, "proprio": torch.cat([start, start + 0.05 * actions.cumsum(1)], 1)}

    train, val = walk(60), walk(20)
    assert action_r2(train, val) > 0.99
    shifted = {"proprio": val["proprio"], "actions": val["actions"].roll(1, dims=1)}  # action t+1 paired with move t
    assert action_r2({"proprio": train["proprio"], "actions": train["actions"].roll(1, dims=1)}, shifted) < 0.1


def test_the_state_read_out_finds_what_the_latents_hold_and_not_noise(tiny_control):
    """state_r2 per value: a recorded state the latents hold linearly reads back (R^2 well above 0), noise does not."""
    from benchmarks.world_model_check import check
    from jepa_control.collect import read_trajectories

    path, trained, _ = tiny_control
    train, val = read_trajectories(path / "train"), read_trajectories(path / "val")
    for data in (train, val):
        with torch.no_grad():
            held = trained.encode(data["frames"])[..., 0, :1]
        data["state"] = torch.cat([held, torch.randn(held.shape, generator=torch.Generator().manual_seed(1))], -1)
    out = check(trained.eval(), train, val, episodes=12, mlp_steps=300)
    assert out["state_r2"][0] > 0.6 and out["state_r2"][1] < 0.1  # 84 training frames for 128 features
    assert "state_readout_r2" not in out  # this world model learned no read-out of its own
    for probe in ("state_mlp_r2", "state_pixels_mlp_r2"):  # the MLP read-outs: noise stays unread
        assert len(out[probe]) == 2 and out[probe][1] < 0.1
    assert out["state_mlp_r2"][0] > 0.3
